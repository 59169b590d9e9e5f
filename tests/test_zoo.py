"""Packaged models: a real trained run packaged with package_run, registered by a plugin through the
register_models hook, created by name, checked against its sha256, and answering predict like the
run it came from."""

import json
import shutil

import pytest

from xrdcore.hookspecs import hookimpl
from xrdcore.predict import format_prediction, predict
from xrdcore.registry import ComponentError, Registry
from xrdcore.zoo import CARD, ModelError, PretrainedModel, load_model, package_run, sha256
from tests.test_predict import FILM, needs_pvlab


@pytest.fixture(scope="module")
def packaged(tiny_run, tmp_path_factory):
    card = {"name": "tiny-rcnet", "task": "space group (test model)", "licence": "CC0",
            "training_data": {"dataset": "mp20-sample"}}
    return package_run(tiny_run, tmp_path_factory.mktemp("zoo") / "tiny-rcnet", card=card,
                       card_text="# tiny-rcnet\n\nA test model.\n", half=True)


def _registry_with(folder):
    class ThirdParty:
        @hookimpl
        def register_models(self, register):
            register("tiny-rcnet", lambda: PretrainedModel.from_folder(folder), description="a test model")

    registry = Registry(entry_points=[])
    registry.add_plugin("someone-elses-models", ThirdParty())
    return registry


def test_package_run_writes_a_card_with_the_run_facts(packaged, tiny_run):
    card = json.loads((packaged.path / CARD).read_text())
    record = json.loads((tiny_run / "config.json").read_text())
    assert card["format"] == "xrdcore-model/1" and card["name"] == "tiny-rcnet"
    assert card["sha256"] == sha256(packaged.weights) and card["size_bytes"] == packaged.weights.stat().st_size
    assert card["input"]["wavelength"] == record["wavelength"] == pytest.approx(1.54056)
    assert card["input"]["two_theta"] == record["config"]["input"]["two_theta"]
    assert card["weights_dtype"] == "float16" and card["encoder"] == record["encoder"]["qualified_name"]
    assert json.loads((packaged.path / "config.json").read_text())["data"]["path"] is None  # no local path
    assert packaged.contract_errors() == []


def test_a_third_party_model_is_created_by_name_and_predicts_like_its_run(packaged, tiny_run, simulated):
    registry = _registry_with(packaged.path)
    model = load_model("tiny-rcnet", registry)
    assert registry.names("models") == ["tiny-rcnet"] and model.card_text.startswith("# tiny-rcnet")
    ours, theirs = model.predict(simulated[0], top=3), predict(tiny_run, simulated[0], top=3)
    assert [s.number for s in ours.space_groups] == [s.number for s in theirs.space_groups]
    assert [s.probability for s in ours.space_groups] == pytest.approx(
        [s.probability for s in theirs.space_groups], abs=5e-3)  # float16 weights
    assert format_prediction(ours).startswith("model:    tiny-rcnet (")


def test_changed_weights_fail_their_sha256(packaged, tmp_path):
    copy = shutil.copytree(packaged.path, tmp_path / "tiny-rcnet")
    weights = copy / "checkpoints" / "best.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ComponentError, match=r"sha256 .* is not the card's .*reinstall"):
        load_model("tiny-rcnet", _registry_with(copy))
    with pytest.raises(ModelError, match=r"sha256 .* is not the card's"):  # made without the registry too
        PretrainedModel.from_folder(copy).load()
    (copy / CARD).write_text("{}")
    with pytest.raises(ModelError, match=r"model\.json: not an xrdcore model card"):
        PretrainedModel.from_folder(copy)
    with pytest.raises(ModelError, match="not a packaged model"):
        PretrainedModel.from_folder(tmp_path)


@needs_pvlab
def test_cli_predict_with_a_model_needs_no_run_directory(capsys):
    from xrdcore.cli import main

    assert main(["predict", str(FILM)]) == 2
    assert "a pretrained model (--model NAME" in capsys.readouterr().err


def test_cli_predict_says_when_a_folder_holds_no_patterns(tiny_run, capsys):
    from xrdcore.cli import main

    assert main(["predict", str(tiny_run), str(tiny_run / "checkpoints")]) == 2
    assert "no pattern files in" in capsys.readouterr().err
