"""Bring your own model: a network trained elsewhere, imported as a TorchScript file or as a factory plus a
state_dict, is held, evaluated, explained and used by a study exactly as the lab's own models are."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from conftest import REPO_ROOT, module_lab, run_cli, use_lab
from sklearn.metrics import roc_auc_score
from support.foreign_models import assert_explains, direct_probabilities, fit, save_both, tiny_cnn

MEAN, STD = 0.4, 0.3
FACTORY = "support.foreign_models:tiny_cnn"
DECLARE = ["--input-size", "32", "--channels", "1", "--mean", str(MEAN), "--std", str(STD)]

pytestmark = pytest.mark.xdist_group("model_import")


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory):
    """A lab home with dataset 'tiny' and, outside it, networks trained elsewhere: the finding as output 0
    (class order unlike the dataset's), one returning probabilities, one returning one logit."""
    with module_lab(tmp_path_factory) as home:
        # the corner marker (--shortcut 1.0) is learnt in a few dozen steps: these tests are about the import
        assert run_cli("data", "synth", "--name", "tiny", "--n", "300", "--size", "32", "--seed", "3",
                       "--shortcut", "1.0").code == 0
        from xai_lab.data.storage import load_dataset

        train = load_dataset("tiny")["train"]
        outside = home.parent / f"{home.name}-vendor"
        networks = {
            "swapped": fit(tiny_cnn(), train.images, train.labels, 40, MEAN, STD, 1, swap_classes=True),
            "probabilities": fit(tiny_cnn(outputs="probabilities"), train.images, train.labels, 40, MEAN, STD, 1),
            "binary": fit(tiny_cnn(outputs="binary_logit"), train.images, train.labels, 40, MEAN, STD, 1,
                          binary=True),
        }
        files = {name: save_both(network, outside, name) for name, network in networks.items()}
        yield home, networks, files


def _import(files, name: str, *extra: str, route: str = "factory", classes: str = "lesion,normal"):
    scripted, weights = files[name]
    source = ["--torchscript", scripted, "--trust-code"] if route == "torchscript" else \
        ["--factory", FACTORY, "--weights", weights]
    return run_cli("model", "import", *source, "--data", "tiny", "--classes", classes, *DECLARE, *extra)


def test_a_factory_model_with_its_own_class_order_gives_its_own_probabilities(foreign, monkeypatch):
    home, networks, files = foreign
    use_lab(home, monkeypatch)
    result = _import(files, "swapped", "--name", "swapped_f", "--json")
    assert result.code == 0, result.err
    card = json.loads(result.out)
    assert card["provenance"]["trained_by"] == "not trained by xai-lab"
    assert card["provenance"]["source_sha256"] == hashlib.sha256(files["swapped"][1].read_bytes()).hexdigest()
    assert card["architecture"]["gradcam_layer"] == "conv2" and card["architecture"]["class_order"] == [1, 0]
    assert card["calibration"]["recalibrated"] is False and card["decision"]["threshold"] == 0.5

    from xai_lab.data.storage import load_dataset
    from xai_lab.model.storage import load_model

    model, _ = load_model("swapped_f")
    test = load_dataset("tiny")["test"]
    direct = direct_probabilities(networks["swapped"], test.images, MEAN, STD, 1, finding=0)
    assert torch.allclose(model.predict_proba(test.images)[:, 1], direct, atol=1e-6)
    evaluated = json.loads(run_cli("evaluate", "--model", "swapped_f", "--data", "tiny", "--json").out)
    assert evaluated["auroc"] == pytest.approx(roc_auc_score(test.labels.numpy(), direct.numpy()), abs=1e-6)
    assert evaluated["auroc"] > 0.9


def test_declared_probabilities_and_a_single_logit_read_as_the_network_means_them(foreign, monkeypatch):
    home, networks, files = foreign
    use_lab(home, monkeypatch)
    from xai_lab.data.storage import load_dataset
    from xai_lab.model.storage import load_model

    test = load_dataset("tiny")["test"]
    assert _import(files, "probabilities", "--name", "probs", "--outputs", "probabilities",
                   "--factory-arg", "outputs=probabilities", classes="normal,lesion").code == 0
    model, _ = load_model("probs")
    with torch.no_grad():
        own = networks["probabilities"]((test.images - MEAN) / STD)[:, 1]
    assert torch.allclose(model.predict_proba(test.images)[:, 1], own, atol=1e-5)

    assert _import(files, "binary", "--name", "binary", "--outputs", "binary_logit", "--factory-arg",
                   "outputs=binary_logit", classes="normal,lesion").code == 0
    model, _ = load_model("binary")
    with torch.no_grad():
        own = torch.sigmoid(networks["binary"]((test.images - MEAN) / STD)[:, 0])
    assert torch.allclose(model.predict_proba(test.images)[:, 1], own, atol=1e-6)


def test_torchscript_needs_trust_and_then_matches_the_factory_route(foreign, monkeypatch):
    home, _, files = foreign
    use_lab(home, monkeypatch)
    scripted = files["swapped"][0]
    refused = run_cli("model", "import", "--torchscript", scripted, "--data", "tiny", "--classes", "lesion,normal",
                      *DECLARE, "--name", "untrusted")
    assert refused.code == 2 and "--trust-code" in refused.err and len(refused.err.strip().splitlines()) == 1
    assert not (home / "models" / "untrusted").exists()

    assert _import(files, "swapped", "--name", "swapped_t", route="torchscript").code == 0
    assert _import(files, "swapped", "--name", "swapped_f2").code == 0
    from xai_lab.data.storage import load_dataset
    from xai_lab.explain.attribution import attribute
    from xai_lab.model.storage import load_model

    images = load_dataset("tiny")["test"].images[:6]
    scripted_model, card = load_model("swapped_t")
    factory_model, _ = load_model("swapped_f2")
    assert card.architecture["route"] == "torchscript" and card.architecture["gradcam_layer"] is None
    assert torch.allclose(scripted_model.predict_proba(images), factory_model.predict_proba(images), atol=1e-6)
    assert torch.allclose(attribute(scripted_model, images, 1, "saliency"), attribute(factory_model, images, 1,
                                                                                       "saliency"), atol=1e-5)
    from xai_lab.errors import ExplainError

    with pytest.raises(ExplainError, match="TorchScript"):
        attribute(scripted_model, images, 1, "gradcam")
    shown = run_cli("explain", "evaluate", "--model", "swapped_t", "--data", "tiny", "--methods", "deeplift")
    assert shown.code == 2 and "factory" in shown.err


def test_all_eight_methods_and_the_randomisation_cascade_run_on_an_imported_network(foreign, monkeypatch):
    home, _, files = foreign
    use_lab(home, monkeypatch)
    assert _import(files, "swapped", "--name", "eight").code == 0
    from xai_lab.data.storage import load_dataset
    from xai_lab.explain import METHODS
    from xai_lab.explain.randomisation import cascade_blocks, cascading_randomisation
    from xai_lab.model.imported import PerUseReLU
    from xai_lab.model.storage import load_model

    model, _ = load_model("eight")
    shared = [m for m in model.network.imported.modules() if isinstance(m, PerUseReLU)]
    assert [len(m.uses) for m in shared] == [3]  # the one ReLU called three times is three ReLUs now
    test = load_dataset("tiny")["test"]
    images = test.images[test.labels == 1][:3]
    assert len(METHODS) == 8
    for method in METHODS:
        assert_explains(model, images, method)
    assert [name for name, _ in cascade_blocks(model)] == ["fc", "fc1", "conv2", "conv1"]
    before = model.predict_proba(images)
    last = list(cascading_randomisation(model))[-1][1]
    assert not torch.allclose(last.predict_proba(images), before)
    assert torch.allclose(model.predict_proba(images), before)  # the trained model is untouched

    scripted = _import(files, "swapped", "--name", "eight_t", route="torchscript")
    assert scripted.code == 0
    model_t, _ = load_model("eight_t")
    last_t = list(cascading_randomisation(model_t))[-1][1]
    trained = dict(model_t.network.imported.named_parameters())
    for name, parameter in last_t.network.imported.named_parameters():
        assert not torch.equal(parameter, trained[name]) or parameter.dim() == 1, name  # every weight re-drawn


@pytest.mark.parametrize(("change", "says"), [
    (["--classes", "normal,pneumonia"], "declare the model's classes by the dataset's names"),
    (["--outputs", "probabilities"], "outside [0, 1]"),
    (["--factory", "support.no_such_module:net"], "cannot be imported"),
    (["--factory-arg", "num_classes=3"], "do not fit the network"),
    (["--finding", "normal"], "not dataset 'tiny''s finding"),
    (["--channels", "3", "--mean", "0.4,0.4,0.4", "--std", "0.3,0.3,0.3"], "check --input-size and --channels"),
    (["--mean", "0.4,0.4"], "one value per channel"),
    (["--factory-arg", "depth"], "KEY=VALUE"),
])
def test_a_wrong_declaration_is_one_line_exit_2_and_nothing_written(foreign, monkeypatch, change, says):
    home, _, files = foreign
    use_lab(home, monkeypatch)
    args = ["--factory", FACTORY, "--weights", files["swapped"][1], "--data", "tiny", "--classes", "lesion,normal",
            *DECLARE, "--name", "wrong"]
    for index in range(0, len(change), 2):
        flag = change[index]
        if flag in args and flag != "--factory-arg":
            args[args.index(flag) + 1] = change[index + 1]
        else:
            args += change[index:index + 2]
    result = run_cli("model", "import", *args)
    assert result.code == 2, result.out
    assert says in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (home / "models" / "wrong").exists()


def test_a_missing_declaration_names_what_to_declare(foreign, monkeypatch):
    home, _, files = foreign
    use_lab(home, monkeypatch)
    result = run_cli("model", "import", "--factory", FACTORY, "--weights", files["swapped"][1], "--data", "tiny")
    assert result.code == 2 and "class_names, input_size, channels, mean, std" in result.err
    declaration = files["swapped"][1].with_suffix(".toml")
    declaration.write_text('class_names = ["lesion", "normal"]\ninput_size = 32\nchannels = 1\nmean = [0.4]\n'
                           'std = [0.3]\ngradcam_layer = "conv1"\n')
    try:
        beside = run_cli("model", "import", "--factory", FACTORY, "--weights", files["swapped"][1], "--data", "tiny",
                         "--name", "from_toml", "--json")
    finally:
        declaration.unlink()
    assert beside.code == 0, beside.err
    card = json.loads(beside.out)
    assert card["architecture"]["gradcam_layer"] == "conv1" and card["architecture"]["gradcam_layer_source"] == \
        "declared"


def test_recalibration_is_said_and_fits_temperature_and_threshold(foreign, monkeypatch):
    home, _, files = foreign
    use_lab(home, monkeypatch)
    result = _import(files, "swapped", "--name", "recalibrated", "--calibrate-on", "tiny", "--json")
    assert result.code == 0, result.err
    calibration = json.loads(result.out)["calibration"]
    assert calibration["recalibrated"] is True and calibration["calibrated_on"] == "tiny"
    assert calibration["temperature"] != 1.0 and "recalibrated" in calibration["method"]


def test_a_model_folder_copied_from_another_lab_does_not_run_its_code(foreign, monkeypatch, tmp_path):
    home, _, files = foreign
    use_lab(home, monkeypatch)
    assert _import(files, "swapped", "--name", "travels", route="torchscript").code == 0
    other = tmp_path / "other-lab"
    shutil.copytree(home / "models" / "travels", other / "models" / "travels")
    use_lab(other, monkeypatch)
    shown = run_cli("evaluate", "--model", "travels", "--data", str(home / "data" / "tiny"))
    assert shown.code == 2 and "not imported in this lab" in shown.err


def test_a_study_runs_on_an_imported_model_and_20_simulated_participants_complete(foreign, monkeypatch):
    home, _, files = foreign
    use_lab(home, monkeypatch)
    assert _import(files, "swapped", "--name", "study_model", "--calibrate-on", "tiny").code == 0
    from conftest import write_study

    design = write_study(home, study_id="byo", n=6)
    design.write_text(design.read_text().replace('model = "tiny"', 'model = "study_model"'))
    prepared = run_cli("study", "prepare", design)
    assert prepared.code == 0, prepared.err
    result = run_cli("simulate", "--design", design, "--participants", "20", "--dropout", "0")
    assert result.code == 0, result.err
    assert json.loads(result.out.strip().splitlines()[-1])["completed"] == 20
    case_set = json.loads((home / "prepared" / "byo" / "case_set.json").read_text())
    assert case_set["model"] == "study_model" and len(case_set["cases"]) == 6
    assert all(0.0 <= case["ai_confidence"] <= 1.0 for case in case_set["cases"])


def test_the_trainer_page_runs_on_imported_networks_of_both_routes(foreign, monkeypatch):
    """The factory network offers all eight methods and the randomisation check; the TorchScript copy the
    five that need no hooks."""
    home, _, files = foreign
    use_lab(home, monkeypatch)
    assert _import(files, "swapped", "--name", "trainer_f").code == 0
    assert _import(files, "swapped", "--name", "trainer_t", route="torchscript").code == 0
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from xai_lab.explain import METHODS
    from xai_lab.model.imported import HOOKED_METHODS
    from xai_lab.ui import registry

    registry.close_all()
    st.cache_resource.clear()
    st.cache_data.clear()
    monkeypatch.setenv("XAI_LAB_STUDIES", "")
    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=120).run()
    app = app.switch_page("xai_lab/ui/page_scripts/trainer.py").run()
    assert not app.exception, app.exception
    for name, offered in (("trainer_f", set(METHODS)), ("trainer_t", set(METHODS) - set(HOOKED_METHODS))):
        model = next(box for box in app.selectbox if box.label == "Model")
        model.set_value(next(option for option in model.options if option.startswith(name))).run()
        assert not app.exception, app.exception
        methods = next(box for box in app.multiselect if box.label == "Saliency methods")
        assert set(methods.options) == {METHODS[m].title for m in offered} or set(methods.options) == offered
        check = next(box for box in app.selectbox if box.label == "Method to check")
        check.set_value(check.options[0]).run()
        next(b for b in app.button if b.label == "Run the randomisation check").click().run()
        assert not app.exception, app.exception
        assert "on this image" in " ".join(m.value for m in app.markdown), name
    registry.close_all()


def test_an_advice_model_factor_compares_a_factory_and_a_torchscript_network(foreign, monkeypatch, tmp_path):
    home, _, files = foreign
    use_lab(home, monkeypatch)
    assert _import(files, "swapped", "--name", "advisor_f", "--calibrate-on", "tiny").code == 0
    assert _import(files, "swapped", "--name", "advisor_t", "--calibrate-on", "tiny", route="torchscript").code == 0
    from conftest import write_study

    design = write_study(home, study_id="byo_factor", arms='["rely"]', blocks="[2, 4]", n=4)
    text = design.read_text().replace('model = "tiny"', 'model = "advisor_f"')
    text = text.replace('method = "gradcam"', 'method = "saliency"')  # a method both routes run
    factor = ('[factors.model]\nsets = "advice_model"\nvary = "within"\nlevels = ["factory", "script"]\n\n'
              '[factors.model.models]\nfactory = "advisor_f"\nscript = "advisor_t"\n\n')
    design.write_text(text.replace("[data]", factor + "[data]"))
    prepared = run_cli("study", "prepare", design)
    assert prepared.code == 0, prepared.err
    case_set = json.loads((home / "prepared" / "byo_factor" / "case_set.json").read_text())
    assert set(case_set["advice_by_model"]) == {"advisor_t"}  # the study's own model advises in case set order
    own = [case for case in case_set["cases"] if case["advice_source"] == "model"]  # not the planted errors
    assert own
    for case in own:  # the same network by two routes gives the same advice
        other = case_set["advice_by_model"]["advisor_t"][case["case_id"]]
        assert (other["ai_label"], abs(other["ai_confidence"] - case["ai_confidence"]) < 1e-4) == \
            (case["ai_label"], True)
    result = run_cli("simulate", "--design", design, "--participants", "4", "--dropout", "0")
    assert result.code == 0, result.err
    assert json.loads(result.out.strip().splitlines()[-1])["completed"] == 4
