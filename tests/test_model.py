"""The classifier: deterministic training, save/load round trip, calibration, the evaluate contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import module_lab, run_cli, use_lab

from xai_lab import load_dataset, load_model
from xai_lab.model.calibration import choose_threshold, expected_calibration_error, fit_temperature
from xai_lab.model.card import read_model_card
from xai_lab.model.metrics import classification_metrics
from xai_lab.model.network import ImageClassifier, NetworkSpec
from xai_lab.model.training import TrainConfig, train_classifier

FAST = TrainConfig(max_epochs=3, batch_size=32, patience=3)

# Its module fixture trains models: one worker runs the whole module (pytest --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_model")


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    with module_lab(tmp_path_factory) as home:
        assert run_cli("data", "synth", "--name", "tiny", "--n", "160", "--size", "48", "--seed", "2").code == 0
        result = run_cli("train", "--data", "tiny", "--epochs", "3", "--quiet")
        assert result.code == 0, result.err
        yield home


@pytest.fixture
def in_tiny_home(tiny_home, monkeypatch):
    return use_lab(tiny_home, monkeypatch)


def test_training_is_deterministic_for_a_seed(in_tiny_home):
    dataset = load_dataset("tiny")
    first = train_classifier(dataset, FAST, progress=False).model.state_dict()
    second = train_classifier(dataset, FAST, progress=False).model.state_dict()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=key)
    other = train_classifier(dataset, TrainConfig(**{**FAST.to_dict(), "seed": 1}), progress=False).model.state_dict()
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_saved_model_loads_with_weights_only_and_predicts_the_same(in_tiny_home):
    model, card = load_model(in_tiny_home / "models" / "tiny")
    assert not model.training
    again, _ = load_model("tiny")  # by name, under XAI_LAB_HOME/models
    images = load_dataset("tiny")["test"].images
    torch.testing.assert_close(model(images), again(images))
    probabilities = model.predict_proba(images)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(len(images)))
    assert card.dataset.name == "tiny"
    assert float(model.temperature) == pytest.approx(card.calibration["temperature"])


def test_model_card_records_what_the_issue_asks(in_tiny_home):
    card = read_model_card(in_tiny_home / "models" / "tiny")
    assert len(card.dataset.card_sha256) == 64 and len(card.dataset.content_sha256) == 64
    assert card.training["config"]["seed"] == 0 and card.training["seconds"] > 0
    assert {"torch", "torchvision", "python", "xai_lab"} <= set(card.versions)
    for split in ("val", "test"):
        assert {"auroc", "accuracy", "sensitivity", "specificity", "ece", "brier", "n"} <= set(card.metrics[split])
        assert {"before", "temperature", "after"} == set(card.calibration[split])
    assert card.decision.rule == "youden" and 0 < card.decision.threshold < 1
    assert card.not_for_clinical_use is True and "not for clinical use" in card.intended_use.lower()


def test_model_takes_unit_pixels_at_any_size_and_normalises_inside(in_tiny_home):
    model, card = load_model("tiny")
    assert card.preprocessing.input_size == 48
    small = torch.rand(2, 1, 48, 48)
    large = torch.nn.functional.interpolate(small, size=(96, 96), mode="bilinear", align_corners=False)
    assert model(large).shape == (2, 2)
    # Gradients reach the full-resolution input (saliency is computed at the size clinicians see).
    large.requires_grad_(True)
    model(large)[:, 1].sum().backward()
    assert large.grad is not None and large.grad.abs().sum() > 0


def test_evaluate_json_contract(in_tiny_home):
    result = run_cli("evaluate", "--model", in_tiny_home / "models" / "tiny", "--data", "tiny", "--json")
    assert result.code == 0, result.err
    metrics = json.loads(result.out)
    for key in ("auroc", "accuracy", "sensitivity", "specificity", "ece", "brier", "n"):
        assert key in metrics
    assert metrics["n"] == len(load_dataset("tiny")["test"])
    val = json.loads(run_cli("evaluate", "--model", "tiny", "--data", "tiny", "--split", "val", "--json").out)
    assert val["split"] == "val" and val["n"] == len(load_dataset("tiny")["val"])


def test_evaluate_accepts_a_raw_file_path(in_tiny_home, tmp_path):
    dataset = load_dataset("tiny")
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = (dataset[split].images[:, 0] * 255).round().byte().numpy()
        arrays[f"{split}_labels"] = dataset[split].labels.numpy()[:, None]
    path = tmp_path / "external.npz"
    np.savez(path, **arrays)
    result = run_cli("evaluate", "--model", "tiny", "--data", path, "--external", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["class_names"] == ["normal", "lesion"]


def test_temperature_scaling_improves_ece_on_a_held_out_split():
    """Overconfident logits (a calibrated model's logits x 3): T fitted on one half fixes the other."""
    rng = np.random.default_rng(0)
    n = 4000
    labels = rng.integers(0, 2, n)
    evidence = rng.normal(0, 1.5, n) + np.where(labels == 1, 1.0, -1.0)
    calibrated = np.stack([np.zeros(n), evidence], 1)  # P(label 1) = sigmoid(evidence): calibrated by design
    overconfident = torch.tensor(calibrated * 3.0)
    y = torch.tensor(labels)
    fit, held_out = slice(0, n // 2), slice(n // 2, n)
    temperature = fit_temperature(overconfident[fit], y[fit])
    before = expected_calibration_error(torch.softmax(overconfident[held_out], 1).numpy(), labels[held_out])
    rescaled = torch.softmax(overconfident[held_out] / temperature, 1).numpy()
    after = expected_calibration_error(rescaled, labels[held_out])
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert before > 0.08 and after < 0.03 and after < before / 3


def test_ece_matches_a_hand_computed_value():
    probabilities = np.array([[0.1, 0.9], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([1, 0, 0, 1])
    # bins (15): 0.9 -> bin 13 (acc 1), 0.8 -> bin 12 (acc 0), 0.6 -> bin 9 (acc 1), 0.7 -> bin 10 (acc 1)
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.6) + abs(1 - 0.7)) / 4
    assert expected_calibration_error(probabilities, labels) == pytest.approx(expected)


def test_threshold_rules():
    p = np.array([0.1, 0.3, 0.35, 0.6, 0.8, 0.9])
    y = np.array([0, 0, 1, 1, 1, 1])
    assert choose_threshold(p, y, "half") == 0.5
    assert choose_threshold(p, y, "youden") == pytest.approx(0.35)
    assert choose_threshold(p, y, "accuracy") == pytest.approx(0.35)


def test_metrics_for_multiclass():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 2, 1])
    metrics = classification_metrics(probabilities, probabilities.argmax(1), labels, with_ci=False)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["sensitivity"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert 0 <= metrics["auroc"] <= 1


def test_network_depth_fits_the_input_size():
    for size, downsamples in ((28, 2), (64, 2), (128, 3), (224, 4)):
        spec = NetworkSpec.for_input(1, 2, size)
        assert spec.n_downsamples == downsamples
        model = ImageClassifier(spec, [0.5], [0.25])
        assert model(torch.rand(1, 1, size, size)).shape == (1, 2)
        # Grad-CAM's resolution (NetworkSpec.n_downsamples): cells of at most 8 px
        assert spec.final_map_size == 7 if size <= 48 else 14 <= spec.final_map_size <= 16


@pytest.mark.parametrize("total_steps", range(1, 41))
def test_the_learning_rate_schedule_runs_for_any_number_of_steps(total_steps):
    """PyTorch's one-cycle with a 20% warm-up divided by zero at exactly 5 steps (`--epochs 1` on 280
    training images); every length now runs to its end."""
    from xai_lab.model.training import learning_rate_schedule

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimiser = torch.optim.AdamW([parameter], lr=0.01)
    schedule = learning_rate_schedule(optimiser, 0.01, total_steps)
    rates = []
    for _ in range(total_steps):
        optimiser.step()
        schedule.step()
        rates.append(optimiser.param_groups[0]["lr"])
    assert all(0 < rate <= 0.01 for rate in rates)


def test_one_epoch_on_a_small_set_trains(lab_home):
    """280 training images at batch 64: the 5 optimiser steps that crashed `xai-lab train --epochs 1`."""
    assert run_cli("data", "synth", "--name", "five", "--n", "400", "--size", "32", "--seed", "1").code == 0
    result = run_cli("train", "--data", "five", "--epochs", "1", "--quiet")
    assert result.code == 0, result.err
    assert load_model(str(lab_home / "models" / "five"))[1].training["epochs_run"] == 1
