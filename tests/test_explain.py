"""Explanations: the Captum interface, overlays, quality metrics, the evaluate CLI and the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, module_lab, run_cli, use_lab
from PIL import Image
from torch import nn

from xai_lab import load_dataset, load_model
from xai_lab.data.display import to_display_image
from xai_lab.errors import ExplainError
from xai_lab.explain import METHODS, attribute
from xai_lab.explain.cache import ExplanationCache
from xai_lab.explain.metrics import (
    deletion_insertion,
    pointing_game,
    relevance_mass,
    relevance_rank,
    spearman_similarity,
    ssim_similarity,
)
from xai_lab.explain.overlay import render_look, render_overlay
from xai_lab.explain.randomisation import cascading_randomisation
from xai_lab.explain.request import ExplanationRequest
from xai_lab.model.card import read_model_card
from xai_lab.model.network import ImageClassifier, NetworkSpec

ARTIFACTS = REPO_ROOT / "test-artifacts" / "overlays"
EXPECTED_METHODS = ["saliency", "integrated_gradients", "smoothgrad", "gradient_shap", "deeplift", "occlusion",
                    "gradcam", "guided_gradcam"]
SIDE = 48
PATCH = (slice(6, 13), slice(29, 36))  # rows 6-12, columns 29-35: off-centre, so a flip or transpose shows

# Its module fixture trains models: one worker runs the whole module (pytest --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_explain")


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    with module_lab(tmp_path_factory) as home:
        assert run_cli("data", "synth", "--name", "tiny", "--n", "160", "--size", str(SIDE), "--seed", "3").code == 0
        assert run_cli("train", "--data", "tiny", "--epochs", "6", "--members", "1", "--quiet").code == 0
        assert run_cli("train", "--data", "tiny", "--epochs", "6", "--members", "1", "--quiet", "--seed", "1",
                       "--out", str(home / "models" / "tiny-seed1")).code == 0
        yield home


@pytest.fixture
def in_tiny_home(tiny_home, monkeypatch):
    return use_lab(tiny_home, monkeypatch)


def brightness_detector() -> ImageClassifier:
    """A hand-set classifier whose 'lesion' logit rises with bright local spots: the truth is known."""
    model = ImageClassifier(NetworkSpec.for_input(1, 2, SIDE), mean=[0.0], std=[1.0])
    conv = nn.Conv2d(1, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.fill_(1 / 9)
        conv.bias.fill_(-0.5)  # only spots brighter than 0.5 activate
    network = model.network
    network.features = nn.Sequential(nn.Sequential(conv, nn.ReLU()))
    network.max_pool = nn.MaxPool2d(SIDE)
    network.head = nn.Sequential(nn.Linear(8, 2))
    with torch.no_grad():
        network.head[0].weight.copy_(torch.tensor([[-1.0] * 8, [1.0] * 8]))
        network.head[0].bias.zero_()
    return model.eval()


def planted_image() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    image = 0.2 + 0.02 * torch.randn(1, 1, SIDE, SIDE, generator=generator)
    image[0, 0, PATCH[0], PATCH[1]] = 0.9
    return image.clamp(0, 1)


def _hook_count(model: nn.Module) -> int:
    return sum(len(getattr(m, name)) for m in model.modules()
               for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"))


def test_registry_offers_the_eight_methods_with_parameters():
    assert list(METHODS)[:8] == EXPECTED_METHODS  # the published eight stay, in order; new ones follow
    described = METHODS["integrated_gradients"].describe()
    assert described["parameters"]["n_steps"]["default"] == 32
    assert METHODS["occlusion"].describe()["parameters"]["baseline"]["default"] == "blurred"
    result = run_cli("explain", "methods", "--json")
    assert result.code == 0 and set(json.loads(result.out)) == set(METHODS)


@pytest.mark.parametrize("method", list(METHODS))  # every registered method: a new one is tested the day it lands
def test_map_peaks_on_the_planted_bright_patch(method):
    model = brightness_detector()
    maps = attribute(model, planted_image(), 1, method)
    assert maps.shape == (1, SIDE, SIDE) and maps.dtype == torch.float32
    peak_row, peak_col = divmod(int(maps[0].argmax()), SIDE)
    # within the patch, allowing one pixel for methods that peak on its edge
    assert PATCH[0].start - 1 <= peak_row < PATCH[0].stop + 1, (method, peak_row, peak_col)
    assert PATCH[1].start - 1 <= peak_col < PATCH[1].stop + 1, (method, peak_row, peak_col)


# Fewer occluded windows for the contract test below (225 -> 49 per image): it checks determinism,
# shape and hygiene, not the default settings, whose maps the localisation tests check.
LIGHT_PARAMETERS = {"occlusion": {"window_fraction": 0.25}}


@pytest.mark.parametrize("method", list(METHODS))
def test_attribution_is_deterministic_shaped_and_leaves_no_trace(in_tiny_home, method):
    model, _ = load_model("tiny")
    images = load_dataset("tiny")["test"].images[:5]
    hooks = _hook_count(model)
    numpy_before = np.random.get_state()[1].copy()
    model.train()  # the caller's mode must come back unchanged
    light = LIGHT_PARAMETERS.get(method, {})
    with torch.no_grad():  # a caller's no_grad must not break gradient methods
        first = attribute(model, images, [0, 1, 1, 0, 1], method, seed=4, batch_size=2, **light)
    second = attribute(model, images, [0, 1, 1, 0, 1], method, seed=4, batch_size=5, **light)
    assert model.training and _hook_count(model) == hooks
    assert first.shape == (5, SIDE, SIDE) and first.dtype == torch.float32
    assert torch.isfinite(first).all() and first.abs().sum() > 0
    # same seed, same batching: identical bits
    again = attribute(model, images, [0, 1, 1, 0, 1], method, seed=4, batch_size=2, **light)
    assert torch.equal(first, again)
    assert (np.random.get_state()[1] == numpy_before).all()  # the caller's NumPy RNG is untouched
    # another batch size changes float32 summation order only: equal to rounding,
    # judged against the map's own scale (a fixed atol fails on maps near zero)
    scale = float(first.abs().max())
    torch.testing.assert_close(first, second, rtol=1e-4, atol=1e-5 * scale)
    # upsampled display-resolution input: maps come back at the size given
    bigger = torch.nn.functional.interpolate(images[:1], size=96, mode="bilinear")
    assert attribute(model, bigger, 1, method, **light).shape == (1, 96, 96)


def test_hooks_left_by_a_failing_method_are_removed(in_tiny_home, monkeypatch):
    """A method that hooks the model and then fails (as Captum can midway) leaves no hook behind."""
    from dataclasses import replace

    from xai_lab.explain.methods import METHODS

    def hook_then_fail(model, images, targets, params):
        model.gradcam_layer.register_forward_hook(lambda *args: None)
        model.gradcam_layer.register_full_backward_hook(lambda *args: None)
        raise RuntimeError("interrupted midway")

    monkeypatch.setitem(METHODS, "gradcam", replace(METHODS["gradcam"], compute=hook_then_fail))
    model, _ = load_model("tiny")
    images = load_dataset("tiny")["test"].images[:2]
    hooks = _hook_count(model)
    with pytest.raises(RuntimeError, match="interrupted midway"):
        attribute(model, images, 1, "gradcam")
    assert _hook_count(model) == hooks
    assert "register_forward_hook" not in model.gradcam_layer.__dict__  # the wrappers are gone too


def test_bad_requests_are_refused_with_the_fix(in_tiny_home):
    model, _ = load_model("tiny")
    images = load_dataset("tiny")["test"].images[:2]
    hooks = _hook_count(model)
    with pytest.raises(ExplainError, match="choose one of saliency, integrated_gradients"):
        attribute(model, images, 1, "lime")
    with pytest.raises(ExplainError, match="target class 2 is out of range"):
        attribute(model, images, 2, "gradcam")
    with pytest.raises(ExplainError, match="1-channel images but these have 3"):
        attribute(model, images.repeat(1, 3, 1, 1), 1, "saliency")
    with pytest.raises(ExplainError, match="square"):
        attribute(model, images[..., :40], 1, "saliency")
    with pytest.raises(ExplainError, match="N x C x H x W"):
        attribute(model, images[0], 1, "saliency")
    with pytest.raises(ExplainError, match="has no parameter steps; its parameters: n_steps"):
        attribute(model, images, 1, "integrated_gradients", steps=3)
    assert _hook_count(model) == hooks
    result = run_cli("explain", "evaluate", "--model", "tiny", "--data", "tiny", "--methods", "gradcam,lime")
    assert result.code == 2 and "unknown saliency method 'lime'" in result.err


def test_localisation_metrics_on_hand_made_maps():
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 2:4, 2:4] = True  # 4 pixels
    inside = torch.zeros(1, 10, 10)
    inside[0, 2:4, 2:4] = 3.0
    inside[0, 8, 8] = 4.0  # peak outside, far away
    assert pointing_game(inside, mask, tolerance=0.1)[0] == 0.0
    assert pointing_game(inside, mask, tolerance=0.8)[0] == 1.0  # 7.1 px from the mask, within 8
    assert relevance_mass(inside, mask)[0] == pytest.approx(12 / 16)
    assert relevance_rank(inside, mask)[0] == pytest.approx(3 / 4)  # top 4 pixels: the peak and 3 inside
    assert np.isnan(relevance_mass(-inside, mask)[0])  # no positive evidence at all


def test_similarity_of_a_map_with_itself_and_with_noise():
    maps = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(spearman_similarity(maps, maps), 1.0)
    np.testing.assert_allclose(ssim_similarity(maps, maps), 1.0)
    noise = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    assert np.all(np.abs(spearman_similarity(maps, noise)) < 0.3)


def test_deletion_of_the_true_evidence_drops_the_probability_faster():
    model = brightness_detector()
    image = torch.full((1, 1, SIDE, SIDE), 0.2)
    image[0, 0, 20:23, 20:23] = 0.9  # small enough that the blurred reference erases it
    right = torch.zeros(1, SIDE, SIDE)
    right[0, 20:23, 20:23] = 1.0
    deletion_right, insertion_right = deletion_insertion(model, image, right, torch.tensor([1]))
    deletion_wrong, insertion_wrong = deletion_insertion(model, image, 1.0 - right, torch.tensor([1]))
    assert deletion_right[0] < deletion_wrong[0] - 0.2
    assert insertion_right[0] > insertion_wrong[0] + 0.2


def test_cascading_randomisation_changes_every_block_and_not_the_model(in_tiny_home):
    model, _ = load_model("tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    blocks = []
    for name, randomised in cascading_randomisation(model, seed=0):
        blocks.append(name)
        last = randomised
    assert blocks[0] == "head" and blocks[-1] == "features.0"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    changed = [k for k, v in last.state_dict().items() if v.is_floating_point() and k.startswith("network.")
               and not torch.equal(v, before[k])]
    assert any(k.startswith("network.head") for k in changed)
    assert any(k.startswith("network.features.0") for k in changed)


def test_overlay_is_display_sized_aligned_and_has_a_legend():
    image = planted_image()[0]
    attribution = torch.zeros(SIDE, SIDE)
    attribution[PATCH[0], PATCH[1]] = 1.0
    picture = render_overlay(image, attribution, display_size=240, legend=False)
    assert picture.size == (240, 240) and picture.mode == "RGB"
    plain = render_overlay(image, torch.zeros(SIDE, SIDE), display_size=240, legend=False)
    changed = np.abs(np.asarray(picture, dtype=int) - np.asarray(plain, dtype=int)).sum(axis=2) > 30
    rows, cols = np.nonzero(changed)
    scale = 240 / SIDE
    assert PATCH[0].start * scale - 4 <= rows.mean() <= PATCH[0].stop * scale + 4
    assert PATCH[1].start * scale - 4 <= cols.mean() <= PATCH[1].stop * scale + 4
    with_legend = render_overlay(image, attribution, display_size=240, top_k_percent=5, mode="signed")
    assert with_legend.height == 240 and with_legend.width > 240
    outline = np.all(np.asarray(with_legend)[:, :240] == 255, axis=2)
    assert outline.any()


def test_overlay_upsampling_is_smooth_not_blocky():
    attribution = torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
    picture = np.asarray(render_overlay(torch.full((8, 8), 0.5), attribution, display_size=256, legend=False,
                                        alpha=1.0), dtype=int)
    # nearest-neighbour upsampling would repeat each value over 32 x 32 blocks: few distinct rows
    assert len({tuple(row) for row in picture[:, 100]}) > 64


def test_low_confidence_withholds_the_map():
    image, attribution = planted_image()[0], torch.rand(SIDE, SIDE)
    hidden = render_overlay(image, attribution, display_size=200, legend=False, confidence=0.55, min_confidence=0.7)
    plain = render_overlay(image, torch.zeros(SIDE, SIDE), display_size=200, legend=False)
    top = slice(0, 150)  # the caption band is at the bottom
    np.testing.assert_array_equal(np.asarray(hidden)[top], np.asarray(plain)[top])
    shown = render_overlay(image, attribution, display_size=200, legend=False, confidence=0.9, min_confidence=0.7)
    assert not np.array_equal(np.asarray(shown)[top], np.asarray(plain)[top])


@pytest.mark.parametrize(("options", "message"), [
    ({"alpha": 1.5}, "alpha must be between 0 and 1"),
    ({"mode": "rainbow"}, "mode must be one of positive, signed, absolute"),
    ({"clip_percentile": 20}, "clip_percentile"),
    ({"top_k_percent": 0}, "top_k_percent"),
])
def test_overlay_bad_options(options, message):
    with pytest.raises(ExplainError, match=message):
        render_overlay(planted_image()[0], torch.rand(SIDE, SIDE), **options)
    with pytest.raises(ExplainError, match="NaN"):
        render_overlay(planted_image()[0], torch.full((SIDE, SIDE), float("nan")))


def test_example_overlays_of_every_method_are_written(in_tiny_home):
    """Looked at by people: every method on synthetic lesions, in test-artifacts/overlays/."""
    model, _ = load_model("tiny")
    test = load_dataset("tiny")["test"]
    index = int(torch.nonzero(test.labels == 1)[0])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for method in METHODS:
        attribution = attribute(model, test.images[index:index + 1], 1, method)[0]
        picture = render_overlay(test.images[index], attribution, display_size=256, top_k_percent=5)
        path = ARTIFACTS / f"synthetic-{method}.png"
        picture.save(path)
        assert Image.open(path).size == picture.size and picture.height == 256


def test_evaluate_cli_json_contract_files_and_model_card(in_tiny_home):
    # the contract, on the two fastest methods and a handful of images (full evaluations run in the slow suite)
    result = run_cli("explain", "evaluate", "--model", "tiny", "--data", "tiny", "--n", "6", "--randomisation-n",
                     "4", "--methods", "saliency,gradcam", "--repeat-model", "tiny-seed1", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["n_images"] == 6 and set(report["methods"]) == {"saliency", "gradcam"}
    keys = {"pointing_game", "relevance_mass", "deletion_auc", "insertion_auc", "mprt_spearman", "mprt_ssim",
            "mprt_pass", "repeatability_spearman", "seconds_per_image"}
    for row in report["methods"].values():
        assert keys <= set(row)
        assert row["seconds_per_image"] > 0 and row["repeatability_spearman"] is not None
        assert isinstance(row["mprt_pass"], bool)
        assert 0 <= row["pointing_game"] <= 1 and 0 <= row["relevance_mass"] <= 1
    folder = in_tiny_home / "models" / "tiny" / "explanations"
    for suffix in ("csv", "md", "html", "json"):
        assert (folder / f"explanations.{suffix}").stat().st_size > 100
    card = read_model_card(in_tiny_home / "models" / "tiny")
    assert card.explanations["default_method"] == report["default_method"]
    assert set(card.explanations["methods"]) == {"saliency", "gradcam"}
    load_model("tiny")  # the weights checksum still holds after the card update


def test_precompute_caches_reuses_and_repairs(in_tiny_home, tmp_path):
    cache_dir = tmp_path / "cache"
    args = ["explain", "precompute", "--model", "tiny", "--data", "tiny", "--n", "3", "--methods",
            "gradcam,saliency", "--cache", cache_dir, "--json"]
    first = run_cli(*args)
    assert first.code == 0, first.err
    assert json.loads(first.out)["computed"] == 6
    assert json.loads(run_cli(*args).out) == {**json.loads(first.out), "computed": 0, "reused": 6}
    entry = next(cache_dir.glob("cases/*/gradcam-*.npz"))
    entry.write_bytes(entry.read_bytes()[:-40])  # damage one entry
    repaired = json.loads(run_cli(*args).out)
    assert repaired["computed"] == 1 and repaired["reused"] == 5
    model, card = load_model("tiny")
    cache = ExplanationCache(cache_dir, card)
    case_id = entry.parent.name
    prediction = cache.load_prediction(case_id)
    # calibrated probabilities, and the label the model's threshold gives (which can carry under one half)
    assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert prediction.predicted == int(model.decide(torch.tensor([prediction.probabilities]))[0])
    loaded = cache.load_explanation(case_id, ExplanationRequest.create("gradcam"))
    assert loaded.attribution.shape == (SIDE, SIDE) and loaded.method == "gradcam"


def test_cache_from_another_model_and_unknown_cases_are_refused(in_tiny_home, tmp_path):
    cache_dir = tmp_path / "cache"
    assert run_cli("explain", "precompute", "--model", "tiny", "--data", "tiny", "--n", "1", "--methods", "gradcam",
                   "--cache", cache_dir).code == 0
    files = sorted(p.relative_to(cache_dir) for p in cache_dir.rglob("*"))
    other = run_cli("explain", "precompute", "--model", "tiny-seed1", "--data", "tiny", "--n", "1", "--cache",
                    cache_dir)
    assert other.code == 2 and "was written by model 'tiny'" in other.err and "--cache" in other.err
    assert sorted(p.relative_to(cache_dir) for p in cache_dir.rglob("*")) == files  # nothing half-written
    cases = tmp_path / "cases.txt"
    cases.write_text("synth-00001\nno-such-case\n")
    unknown = run_cli("explain", "precompute", "--model", "tiny", "--data", "tiny", "--cases", cases)
    assert unknown.code == 2 and "no-such-case" in unknown.err


def test_model_and_data_mismatch_is_refused(in_tiny_home):
    assert run_cli("data", "synth", "--name", "other", "--n", "40", "--size", str(SIDE), "--seed", "9").code == 0
    result = run_cli("explain", "evaluate", "--model", "tiny", "--data", "other", "--n", "4")
    assert result.code == 2 and "was trained on dataset 'tiny'" in result.err
    assert not Path(in_tiny_home / "models" / "tiny" / "explanations" / "other").exists()


def _lesion_under_a_flat_map() -> tuple[np.ndarray, np.ndarray]:
    """A bright disk on textured grey, and a map that is flat (saturated) over the disk and its
    surroundings: any loss of the disk's contrast is the overlay's doing, not the map's shape."""
    y, x = np.mgrid[:128, :128]
    texture = 0.05 * np.random.default_rng(0).standard_normal((128, 128))
    image = np.clip(0.4 + texture + 0.25 * ((x - 80) ** 2 + (y - 50) ** 2 < 100), 0, 1).astype(np.float32)
    attribution = np.clip(1.5 * np.exp(-((x - 80) ** 2 + (y - 50) ** 2) / 800), 0, 1)
    return image, attribution


def _lesion_contrast(picture: Image.Image) -> float:
    """Mean grey level of the disk minus that of a ring just outside it, in the 512-px image."""
    grey = np.asarray(picture.convert("L"), dtype=float)[:, :512]
    y, x = np.mgrid[:512, :512]
    radius = np.hypot(x - 320, y - 200)
    return float(grey[radius < 28].mean() - grey[(radius > 48) & (radius < 60)].mean())


def test_the_contour_look_keeps_the_anatomy_under_the_map_visible():
    image, attribution = _lesion_under_a_flat_map()
    without_map = _lesion_contrast(to_display_image(torch.from_numpy(image)[None], 512))
    kept = {look: _lesion_contrast(render_look(image, attribution, look)) / without_map
            for look in ("contour", "heatmap")}
    assert kept["contour"] >= 0.5  # the acceptance bar; by construction 1 - 0.3 = 0.7
    assert kept["heatmap"] < 0.5  # the old full heat map hid the lesion: the check can fail


def test_side_by_side_shows_the_untouched_radiograph_beside_the_map():
    image, attribution = _lesion_under_a_flat_map()
    panel = render_look(image, attribution, "side_by_side", display_size=256)
    plain = to_display_image(torch.from_numpy(image)[None], 256)
    assert panel.size[0] > 2 * 256 and np.array_equal(np.asarray(panel)[:, :256], np.asarray(plain))
    # the map side differs only inside (and on the outline of) the map's top region
    contour = render_look(image, attribution, "contour", display_size=256)
    assert np.array_equal(np.asarray(panel)[:, -256:], np.asarray(contour))
    changed = np.any(np.asarray(contour) != np.asarray(plain), axis=2).mean()
    assert 0.05 < changed < 0.2  # about the top 10% of the image, plus its outline


def test_an_unknown_look_is_refused():
    image, attribution = _lesion_under_a_flat_map()
    with pytest.raises(ExplainError, match="overlay look must be one of contour, side_by_side, heatmap"):
        render_look(image, attribution, "glow")
