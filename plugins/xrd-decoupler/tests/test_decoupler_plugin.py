"""The plugin as xrdcore sees it: loads cleanly, registers three documented components, stays
light at import, and ships a model card."""

from __future__ import annotations

from pathlib import Path

import xrdcore

ROOT = Path(__file__).resolve().parents[1]


def test_plugin_loads_cleanly_with_its_three_components():
    info = xrdcore.reload_plugins().plugins["xrd-decoupler"]
    assert info.status == "ok", info.errors
    assert not info.notes, info.notes  # no collision with a built-in or another plugin
    components = {(c.kind, c.name): c for c in info.components}
    assert set(components) == {("encoder", "decoupler"), ("label_hierarchy", "superclass"),
                               ("loss_scheduler", "mgda")}
    for component in components.values():
        assert isinstance(component.target, str) or callable(component.target)
        assert len(component.description) > 40
    tiny = components["encoder", "decoupler"].tiny
    assert tiny and "grid" not in tiny  # the harness supplies the data's grid



def test_model_card_has_the_required_sections():
    card = (ROOT / "README.md").read_text()
    for needed in ("2511.06976", "## Results from the harness",
                   "Differences from the published code", "loss+", "beta"):
        assert needed in card, needed
