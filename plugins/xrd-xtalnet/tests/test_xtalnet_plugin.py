"""The plugin as xrdcore sees it: loads cleanly with its three components (that loading imports
nothing heavy is the core's test for every plugin, tests/test_registry.py), its tiny variants,
and a model card."""

from __future__ import annotations

from pathlib import Path

import torch
import xrdcore
from xrdcore.diffraction.grid import AngleGrid

ROOT = Path(__file__).resolve().parents[1]


def test_plugin_loads_cleanly_with_its_components():
    info = xrdcore.reload_plugins().plugins["xrd-xtalnet"]
    assert info.status == "ok", info.errors
    assert not info.notes, info.notes
    components = {(c.kind, c.name): c for c in info.components}
    assert set(components) == {("encoder", "xtalnet-pxrd"), ("generator", "xtalnet"),
                               ("generator", "pyxtal-random")}
    for component in components.values():
        assert isinstance(component.target, str)
        assert len(component.description) > 40
        assert component.tiny
    assert "grid" not in components["encoder", "xtalnet-pxrd"].tiny  # the harness supplies the grid


def test_tiny_components_are_created_through_the_registry():
    registry = xrdcore.get_registry()
    encoder = xrdcore.create_encoder("xrd-xtalnet:xtalnet-pxrd", **registry.get("encoder", "xtalnet-pxrd").tiny,
                                     grid=AngleGrid(10.0, 60.0, 0.05))
    assert encoder.input_kind == "peaks" and encoder.embed_dim == 32 and encoder.n_bins == 1001
    tiny = registry.get("generator", "xtalnet").tiny
    generator = xrdcore.create_generator("xrd-xtalnet:xtalnet", **tiny)
    candidates = generator.sample(torch.zeros(generator.cpcp.shared_dim), "Na2Cl2", 2)
    assert [c.composition.formula for c in candidates] == ["Na2 Cl2"] * 2
    assert len(generator.rank(torch.ones(generator.cpcp.shared_dim), candidates)) == 2
    assert generator.steps == 10 and generator.max_atoms == 20
    baseline_tiny = registry.get("generator", "pyxtal-random").tiny
    baseline = xrdcore.create_generator("xrd-xtalnet:pyxtal-random", **baseline_tiny)
    assert baseline.space_groups is None and baseline.top_k == 5  # the classifier's groups
    # one CPCP stage for both: the same options (and seed) give the same model
    assert {k: baseline_tiny[k] for k in ("cpcp", "cpcp_training", "max_atoms")} == \
        {k: tiny[k] for k in ("cpcp", "cpcp_training", "max_atoms")}


def test_model_card_has_the_required_sections():
    card = (ROOT / "README.md").read_text()
    for needed in ("2401.03862", "## Results from the harness", "Differences from the published code",
                   "stol 0.7", "0.9", "forced", "largest", "pyxtal-random"):
        assert needed in card, needed
