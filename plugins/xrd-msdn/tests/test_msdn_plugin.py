"""The plugin as xrdcore sees it: loads cleanly through its entry point, registers two encoders
and a simulator with descriptions and tiny variants, stays light at import, ships a model card."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import xrdcore
from pymatgen.core import Lattice, Structure
from xrdcore.cli import main

from xrd_msdn.plugin import TINY_ENCODER, TINY_SIMULATOR

ROOT = Path(__file__).resolve().parents[1]


def test_plugin_loads_cleanly_with_its_three_components():
    info = xrdcore.reload_plugins().plugins["xrd-msdn"]
    assert info.status == "ok", info.errors
    assert not info.notes, info.notes  # no collision with a built-in or another plugin
    components = {(c.kind, c.name): c for c in info.components}
    assert set(components) == {("encoder", "msdn"), ("encoder", "densenet"), ("simulator", "zone-axis")}
    for component in components.values():
        assert isinstance(component.target, str) and len(component.description) > 40
    assert components["encoder", "msdn"].tiny == TINY_ENCODER == components["encoder", "densenet"].tiny
    assert components["simulator", "zone-axis"].tiny == TINY_SIMULATOR
    assert not {"views", "channels", "image_size"} & set(TINY_ENCODER)  # the data supplies them


def test_the_components_are_listed_and_created_by_name(capsys):
    xrdcore.reload_plugins()
    assert {"msdn", "densenet"} <= set(xrdcore.list_encoders())
    assert "zone-axis" in xrdcore.list_simulators()
    assert main(["list", "simulators", "--json"]) == 0
    listed = {row["qualified_name"] for row in json.loads(capsys.readouterr().out)}
    assert "xrd-msdn:zone-axis" in listed
    simulator = xrdcore.create_simulator("zone-axis", **TINY_SIMULATOR)
    assert simulator.output_kind == "images"
    copper = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]])
    batch = simulator.simulate([copper, copper])
    assert batch.shape == (2, *simulator.output_shape) == (2, 3, 3, TINY_SIMULATOR["size"], TINY_SIMULATOR["size"])
    encoder = xrdcore.create_encoder("msdn", **TINY_ENCODER, views=3, channels=3, image_size=TINY_SIMULATOR["size"])
    assert encoder(batch).shape == (2, encoder.embed_dim)
    assert encoder.view_embeddings(batch).shape == (2, 3, encoder.embed_dim // 3)
    assert xrdcore.create_encoder("densenet")(torch.rand(2, 3, 3, 64, 64)).shape == (2, 992)  # defaults



def test_model_card_has_the_required_sections():
    card = (ROOT / "README.md").read_text()
    for needed in ("Tiong", "## Results from the harness", "Differences from the published code",
                   "O(spots²)", "images/s", "1.54M", "half_width"):
        assert needed in card, needed
