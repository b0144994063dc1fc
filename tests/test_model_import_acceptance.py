"""Acceptance (slow): torchvision's DenseNet-121 and ResNet-50, trained here in a few steps on the synthetic
radiographs (no download), saved as TorchScript and as factory + state_dict, imported, evaluated, explained
and used by a study that 20 simulated participants complete.

The synthetic set carries the corner marker on 95% of lesion images (`--shortcut 0.95`): 30 steps from
random weights learn the marker (DenseNet-121: test AUROC 0.97) but not the faint lesions (0.47), and the
test is about the import, so it needs networks that have learnt something in a minute."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import module_lab, run_cli, use_lab, write_study
from sklearn.metrics import roc_auc_score
from support.foreign_models import assert_explains, direct_probabilities, fit, save_both

pytestmark = pytest.mark.slow

MEAN, STD = 0.5, 0.25
ARCHITECTURES = ("densenet121", "resnet50")
DECLARE = ["--classes", "normal,lesion", "--input-size", "64", "--channels", "3", "--mean", "0.5,0.5,0.5",
           "--std", "0.25,0.25,0.25"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory):
    """Both networks trained for 30 steps of 16 images, each imported both ways."""
    import torchvision

    with module_lab(tmp_path_factory) as home:
        assert run_cli("data", "synth", "--name", "cxr64", "--n", "400", "--size", "64", "--seed", "1",
                       "--shortcut", "0.95").code == 0
        from xai_lab.data.storage import load_dataset

        train = load_dataset("cxr64")["train"]
        networks = {}
        for architecture in ARCHITECTURES:
            torch.manual_seed(0)
            network = getattr(torchvision.models, architecture)(weights=None, num_classes=2)
            networks[architecture] = fit(network, train.images, train.labels, 30, MEAN, STD, 3, batch=16, lr=1e-3)
            scripted, weights = save_both(networks[architecture], home.parent / f"{home.name}-elsewhere", architecture)
            factory = run_cli("model", "import", "--factory", f"torchvision.models:{architecture}", "--weights",
                              weights, "--factory-arg", "num_classes=2", "--data", "cxr64", *DECLARE,
                              "--name", f"{architecture}_f", "--calibrate-on", "cxr64")
            assert factory.code == 0, factory.err
            script = run_cli("model", "import", "--torchscript", scripted, "--trust-code", "--data", "cxr64",
                             *DECLARE, "--name", f"{architecture}_t")
            assert script.code == 0, script.err
        yield home, networks


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_imported_auroc_equals_the_networks_own_evaluation(imported, monkeypatch, architecture):
    home, networks = imported
    use_lab(home, monkeypatch)
    from xai_lab.data.storage import load_dataset

    test = load_dataset("cxr64")["test"]
    direct = roc_auc_score(test.labels.numpy(),
                           direct_probabilities(networks[architecture], test.images, MEAN, STD, 3).numpy())
    for route in ("f", "t"):
        shown = run_cli("evaluate", "--model", f"{architecture}_{route}", "--data", "cxr64", "--json")
        assert shown.code == 0, shown.err
        assert json.loads(shown.out)["auroc"] == pytest.approx(direct, abs=1e-6), route


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_method_explains_the_imported_networks(imported, monkeypatch, architecture):
    home, _ = imported
    use_lab(home, monkeypatch)
    from xai_lab.data.storage import load_dataset
    from xai_lab.explain import METHODS
    from xai_lab.explain.attribution import methods_for
    from xai_lab.model.storage import load_model

    images = load_dataset("cxr64")["test"].images[:2]
    for route, expected in (("f", 8), ("t", 5)):
        model, _ = load_model(f"{architecture}_{route}")
        runnable, _ = methods_for(model, list(METHODS))
        assert len(runnable) == expected
        for method in runnable:
            assert_explains(model, images, method)


def test_gradcam_on_the_imported_resnet50_passes_the_randomisation_check(imported, monkeypatch, tmp_path):
    home, _ = imported
    use_lab(home, monkeypatch)
    result = run_cli("explain", "evaluate", "--model", "resnet50_f", "--data", "cxr64", "--methods",
                     "gradcam,saliency", "--n", "16", "--randomisation-n", "16", "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    gradcam = report["methods"]["gradcam"]
    print(json.dumps(gradcam, indent=1))  # the figures docs/models.md quotes (pytest -s)
    assert gradcam["mprt_pass"] is True


def test_a_study_on_the_imported_densenet_completes_for_20_simulated_participants(imported, monkeypatch):
    home, _ = imported
    use_lab(home, monkeypatch)
    design = write_study(home, study_id="densenet", n=6)
    text = design.read_text().replace('dataset = "tiny"', 'dataset = "cxr64"')
    design.write_text(text.replace('model = "tiny"', 'model = "densenet121_f"'))
    prepared = run_cli("study", "prepare", design)
    assert prepared.code == 0, prepared.err
    result = run_cli("simulate", "--design", design, "--participants", "20", "--dropout", "0")
    assert result.code == 0, result.err
    assert json.loads(result.out.strip().splitlines()[-1])["completed"] == 20
