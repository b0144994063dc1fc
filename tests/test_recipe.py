"""The training recipe: the wall-clock budget, the deep ensemble, the calibration claim, ResNet-18."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import module_lab, run_cli, use_lab

from xai_lab import load_dataset, load_model
from xai_lab.model.budget import BudgetRecord, budget_for
from xai_lab.model.calibration import (
    CALIBRATION_CLAIM_MAX_ECE,
    calibration_claim,
    expected_calibration_error,
    prevalence_weights,
)
from xai_lab.model.metrics import classification_metrics
from xai_lab.model.network import ImageClassifier, NetworkSpec
from xai_lab.model.training import TrainConfig, member_loss, train_classifier

# Its module fixture trains models: one worker runs the whole module (pytest --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_recipe")


@pytest.fixture(scope="module")
def small_home(tmp_path_factory):
    with module_lab(tmp_path_factory) as home:
        assert run_cli("data", "synth", "--name", "small", "--n", "300", "--size", "32", "--seed", "4",
                       "--shortcut", "1.0").code == 0
        yield home


@pytest.fixture
def in_small_home(small_home, monkeypatch):
    return use_lab(small_home, monkeypatch)


# --- the time budget -------------------------------------------------------------------------

def test_training_stays_within_its_time_budget(in_small_home):
    dataset = load_dataset("small")
    config = TrainConfig(max_epochs=400, batch_size=32, time_budget=6, members=1)
    result = train_classifier(dataset, config, progress=False)
    budget = result.budget
    # 400 epochs would take minutes: the plan was cut to what fits, and the run kept to it
    assert budget.planned_epochs < 400 and len(result.history) <= budget.planned_epochs
    assert budget.cut is not None and "6 s budget" in budget.cut
    # No epoch starts that is expected to overrun (judged by the epoch before it), so the budget is
    # exceeded by at most one epoch that ran slower than expected (a busy machine), never by more.
    times = [0.0] + [row["seconds"] for row in result.history]
    longest_epoch = max(b - a for a, b in zip(times, times[1:], strict=False))
    assert result.seconds <= 6.0 + longest_epoch, result.history
    assert result.seconds < 30  # the 400 epochs asked for would take minutes


def test_budget_plan_counts_the_epochs_that_fit_and_never_plans_more_than_max_epochs():
    budget = BudgetRecord(100.0, "--time-budget", planned_epochs=24, max_epochs=24)
    assert budget.replan(done=1, epoch_seconds=10.0, elapsed=12.0)  # (90 - 12) // 10 = 7 more
    assert budget.planned_epochs == 8 and "allowed 8 of 24" in budget.cut
    assert not budget.replan(done=2, epoch_seconds=10.0, elapsed=22.0)  # (90 - 22) // 10 = 6 more: still 8
    budget.replan(done=2, epoch_seconds=1.0, elapsed=14.0)
    assert budget.planned_epochs == 24 and budget.cut is None  # everything fits: the budget takes nothing
    over = BudgetRecord(10.0, "--time-budget", planned_epochs=24, max_epochs=24)
    over.replan(done=1, epoch_seconds=30.0, elapsed=30.0)
    assert over.planned_epochs == 1  # an epoch longer than the budget: stop after it, never plan zero
    unlimited = BudgetRecord(float("inf"), "none", planned_epochs=24, max_epochs=24)
    assert not unlimited.replan(done=1, epoch_seconds=1000.0, elapsed=1000.0) and unlimited.planned_epochs == 24
    assert unlimited.to_dict()["seconds"] is None  # JSON has no infinity


def test_an_explicit_budget_is_a_hard_limit_and_the_default_has_none():
    """The default recipe never looks at the clock; --time-budget is opt-in and holds its limit."""
    default = budget_for(None, max_epochs=24)
    assert not default.replan(done=1, epoch_seconds=20.0, elapsed=21.0) and default.planned_epochs == 24
    assert not default.out_of_time(done=15, elapsed=10_000.0, epoch_seconds=20.0)
    assert default.to_dict()["seconds"] is None and default.cut is None
    explicit = budget_for(62.0, max_epochs=24)
    explicit.replan(done=1, epoch_seconds=20.0, elapsed=21.0)
    assert explicit.planned_epochs == 2 and "allowed 2 of 24" in explicit.cut
    assert explicit.out_of_time(done=1, elapsed=45.0, epoch_seconds=20.0)


def test_the_default_recipe_follows_the_data_never_the_machine():
    """Batch size and learning rate are filled in from the training set's size alone, and the card says why."""
    small, why = TrainConfig().resolved(n_train=1400)  # the default synthetic set
    assert (small.batch_size, small.members, small.time_budget) == (32, 1, None)
    assert small.learning_rate == pytest.approx(3e-3 * (32 / 64) ** 0.5, rel=1e-4)
    assert "square root" in why["learning_rate"] and "2,000" in why["batch_size"]
    large, _ = TrainConfig().resolved(n_train=4708)  # PneumoniaMNIST keeps the recipe issue 16 measured
    assert (large.batch_size, large.learning_rate, large.members) == (64, 3e-3, 1)
    tiny, _ = TrainConfig().resolved(n_train=300)
    assert tiny.members == 3
    given, why = TrainConfig(batch_size=16, learning_rate=1e-3, members=2).resolved(n_train=1400)
    assert (given.batch_size, given.learning_rate, given.members) == (16, 1e-3, 2)
    assert why == {"members": "--members", "batch_size": "batch size given", "learning_rate": "learning rate given"}


def test_the_progress_bar_counts_the_epochs_asked_for(in_small_home):
    """Without a budget the bar's total never changes and it shows no time left (the budget's bar started
    at 0/24, became 1/16 and said time_left=0s for 13 remaining epochs)."""
    result = run_cli("train", "--data", "small", "--epochs", "3", "--members", "1", "--out",
                     str(in_small_home / "models" / "bar"))
    assert result.code == 0, result.err
    updates = [part for part in result.err.replace("\n", "\r").split("\r") if "training on small" in part]
    assert updates and all("/3 " in part for part in updates), updates
    assert "3/3" in result.err and "time_left" not in result.err


def test_no_budget_repeats_a_run_exactly(in_small_home):
    dataset = load_dataset("small")
    config = TrainConfig(max_epochs=2, batch_size=32, time_budget=0)
    first = train_classifier(dataset, config, progress=False)
    second = train_classifier(dataset, config, progress=False)
    assert first.budget.planned_epochs == 2 and first.budget.to_dict()["source"].startswith("none")
    for key, value in first.model.state_dict().items():
        torch.testing.assert_close(value, second.model.state_dict()[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("args, message", [
    (("--time-budget", "2"), "--time-budget must be at least 5 seconds"),
    (("--time-budget", "nan"), "--time-budget must be at least 5 seconds"),
    (("--members", "0"), "--members must be between 1 and 8"),
    (("--label-smoothing", "0.7"), "--label-smoothing must be at least 0 and below 0.5"),
    (("--backbone", "resnet18", "--members", "2"), "--backbone resnet18 trains one network"),
])
def test_bad_recipe_options_get_one_line_and_exit_2(in_small_home, args, message):
    result = run_cli("train", "--data", "small", "--quiet", *args)
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err


def test_card_records_the_budget_and_the_progress_bar_shows_time_left(in_small_home):
    result = run_cli("train", "--data", "small", "--epochs", "60", "--time-budget", "5", "--out",
                     str(in_small_home / "models" / "budgeted"))
    assert result.code == 0, result.err
    assert "time_left=" in result.err and "val_loss=" in result.err and "epoch" in result.err  # tqdm on stderr
    _, card = load_model(in_small_home / "models" / "budgeted")
    budget = card.training["budget"]
    assert budget["seconds"] == 5.0 and budget["source"] == "--time-budget" and budget["cut"]
    assert card.training["epochs_run"] <= budget["planned_epochs"] < 60
    assert "time budget: 5 s (--time-budget); the 5 s budget" in result.out


# --- the deep ensemble ------------------------------------------------------------------------

def _member(ensemble: ImageClassifier, index: int) -> ImageClassifier:
    """Member `index` of a grouped ensemble, copied into a network of its own."""
    spec = ensemble.spec
    single = ImageClassifier(NetworkSpec(**{**spec.to_dict(), "members": 1}), ensemble.mean.flatten().tolist(),
                             ensemble.std.flatten().tolist())
    own = single.state_dict()
    for key, value in ensemble.state_dict().items():
        target = own[key]
        if value.shape == target.shape:  # buffers shared by all members (preprocessing, calibration)
            own[key] = value.clone()
            continue
        rows = target.shape[0]
        part = value[index * rows:(index + 1) * rows]
        own[key] = part.reshape(target.shape)  # the head's 1 x 1 grouped convolution holds a linear layer
    single.load_state_dict(own)
    return single.eval()


def test_ensemble_probabilities_are_the_mean_of_its_members():
    torch.manual_seed(0)
    ensemble = ImageClassifier(NetworkSpec.for_input(1, 2, 32, members=3), [0.4], [0.2])
    images = torch.rand(8, 1, 32, 32)
    with torch.no_grad():  # members that differ from each other, and real BatchNorm statistics
        ensemble.train()
        for _ in range(3):
            ensemble(torch.rand(16, 1, 32, 32))
    ensemble.eval()
    members = [_member(ensemble, k) for k in range(3)]
    member_probabilities = torch.stack([m.predict_proba(images) for m in members])
    assert not torch.allclose(member_probabilities[0], member_probabilities[1])
    torch.testing.assert_close(ensemble.predict_proba(images), member_probabilities.mean(0), rtol=1e-5, atol=1e-6)
    # calibration applies to the mean probability: softmax(log(mean p) / T + bias)
    ensemble.temperature.fill_(2.0)
    ensemble.logit_bias.copy_(torch.tensor([0.3, -0.3]))
    expected = torch.softmax(member_probabilities.mean(0).log() / 2.0 + torch.tensor([0.3, -0.3]), 1)
    torch.testing.assert_close(ensemble.predict_proba(images), expected, rtol=1e-5, atol=1e-6)


def test_each_member_trains_on_its_own_loss():
    """The training loss is the mean of the members' own losses, not the loss of their average:
    members trained on the average co-adapt and lose the ensemble's diversity."""
    torch.manual_seed(0)
    ensemble = ImageClassifier(NetworkSpec.for_input(1, 2, 32, members=2), [0.4], [0.2]).eval()  # no dropout
    images, labels = torch.rand(6, 1, 32, 32), torch.tensor([0, 1, 0, 1, 1, 0])
    members = [_member(ensemble, k) for k in range(2)]
    separate = sum(torch.nn.functional.cross_entropy(m.uncalibrated_logits(images), labels) for m in members) / 2
    torch.testing.assert_close(member_loss(ensemble, images, labels), separate)
    averaged = torch.nn.functional.cross_entropy(ensemble.uncalibrated_logits(images), labels)
    assert not torch.isclose(member_loss(ensemble, images, labels), averaged)


def test_a_trained_ensemble_saves_loads_and_explains(in_small_home):
    result = run_cli("train", "--data", "small", "--epochs", "2", "--members", "2", "--quiet", "--out",
                     str(in_small_home / "models" / "pair"))
    assert result.code == 0, result.err
    model, card = load_model(in_small_home / "models" / "pair")
    assert card.architecture["members"] == 2 and "ensemble of 2" in card.architecture["type"]
    images = load_dataset("small")["test"].images[:4]
    from xai_lab.explain.attribution import attribute

    maps = attribute(model, images, 1, "gradcam")
    assert maps.shape[-2:] == images.shape[-2:] and torch.isfinite(maps).all() and maps.abs().sum() > 0
    _familiarity_works(model)


def _familiarity_works(model: ImageClassifier) -> None:
    """The trainer page's unfamiliar-image warning reads the head's input features of any network."""
    from xai_lab.model.familiarity import FamiliarityCheck

    data = load_dataset("small")
    check = FamiliarityCheck.fit(model, data["train"].images, data["val"].images)
    assert np.isfinite(check.distance(data["test"].images[0]))


# --- the calibration claim ----------------------------------------------------------------

def test_calibration_claim_needs_the_upper_bound_below_the_threshold():
    below = {"ece_at_prior": 0.02, "ece_at_prior_ci": [0.01, CALIBRATION_CLAIM_MAX_ECE - 0.001], "n": 600}
    above = {"ece_at_prior": 0.02, "ece_at_prior_ci": [0.01, CALIBRATION_CLAIM_MAX_ECE + 0.001], "n": 60}
    assert calibration_claim(below)["supported"]
    assert not calibration_claim(above)["supported"] and "upper bound" in calibration_claim(above)["reason"]
    assert not calibration_claim({"ece_at_prior": 0.01, "n": 5})["supported"]  # no interval: no evidence, no claim


def test_ece_at_the_prior_is_the_ece_of_a_split_with_that_prevalence():
    """Reweighting a 75%-positive split to equal classes gives the ECE a balanced split would show."""
    rng = np.random.default_rng(0)
    # miscalibrated on purpose, and unlike for the two classes: overconfident positives
    positives, negatives = rng.beta(5, 1, 60_000), rng.beta(1, 2, 20_000)

    def split(pos, neg):
        scores = np.concatenate([pos, neg])
        return np.stack([1 - scores, scores], 1), np.concatenate([np.ones(len(pos), int), np.zeros(len(neg), int)])

    skewed, skewed_labels = split(positives, negatives)
    balanced, balanced_labels = split(positives[:20_000], negatives)
    reweighted = expected_calibration_error(skewed, skewed_labels,
                                            weights=prevalence_weights(skewed_labels, np.array([0.5, 0.5])))
    plain = expected_calibration_error(skewed, skewed_labels)
    assert reweighted == pytest.approx(expected_calibration_error(balanced, balanced_labels), abs=0.005)
    assert abs(plain - reweighted) > 0.02  # the split's own mix would have judged another population
    metrics = classification_metrics(skewed[::80], skewed[::80].argmax(1), skewed_labels[::80],
                                     prevalence=np.array([0.5, 0.5]))
    low, high = metrics["ece_at_prior_ci"]
    assert low <= metrics["ece_at_prior"] <= high and metrics["prior_prevalence"] == [0.5, 0.5]


def test_model_card_reports_test_ece_with_its_interval(in_small_home):
    result = run_cli("train", "--data", "small", "--epochs", "2", "--quiet", "--out",
                     str(in_small_home / "models" / "card"))
    assert result.code == 0, result.err
    _, card = load_model(in_small_home / "models" / "card")
    test = card.metrics["test"]
    for key in ("ece", "ece_at_prior"):
        low, high = test[f"{key}_ci"]
        assert low <= test[key] <= high
    assert card.calibration["test_ece_at_prior_ci"] == test["ece_at_prior_ci"]
    assert card.calibration["claim"]["supported"] == (test["ece_at_prior_ci"][1] < CALIBRATION_CLAIM_MAX_ECE)
    assert "ECE " in result.out and "calibration claim" in result.out


# --- the optional pretrained backbone ----------------------------------------------------

def test_resnet18_backbone_from_a_local_weights_file(in_small_home, tmp_path, monkeypatch):
    """The weights file torchvision would download, made here from a fresh ResNet-18 and placed in
    torch's cache: the same code path as a real download, without the network."""
    from torchvision.models import ResNet18_Weights, resnet18

    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), checkpoints / ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    result = run_cli("train", "--data", "small", "--backbone", "resnet18", "--epochs", "1", "--quiet", "--out",
                     str(in_small_home / "models" / "resnet"))
    assert result.code == 0, result.err
    model, card = load_model(in_small_home / "models" / "resnet")
    assert card.architecture["backbone"] == "resnet18" and card.preprocessing.input_size == 64
    assert card.architecture["pretrained"].startswith("torchvision ResNet18_Weights")
    # the pretrained filters arrived (one epoch moves them only a little): grey input = sum of RGB filters
    stem = reference.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.corrcoef(torch.stack([model.network.features[0][0].weight.flatten(), stem.flatten()]))[0, 1] > 0.9
    images = load_dataset("small")["test"].images[:2]
    from xai_lab.explain.attribution import attribute

    assert attribute(model, images, 1, "gradcam").shape[-2:] == images.shape[-2:]
    _familiarity_works(model)


def test_resnet18_without_weights_or_network_is_one_line(in_small_home, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    for proxy in ("https_proxy", "HTTPS_PROXY"):  # offline even on a machine with a network: a closed port
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    result = run_cli("train", "--data", "small", "--backbone", "resnet18", "--epochs", "1", "--quiet")
    assert result.code == 2, result.err
    assert "pretrained ResNet-18 weights could not be loaded" in result.err
    assert "train without --backbone" in result.err and len(result.err.strip().splitlines()) == 1
