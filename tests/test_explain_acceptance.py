"""Acceptance of the explanations issue on the default synthetic model (the shortcut model and
Kermany: tests/test_explain_shortcut.py, a file of its own so that CI runs the two beside each other).

Slow (trains two models and runs the full evaluation): `pytest -m slow`; CI runs it. The
example overlays it writes to test-artifacts/overlays/ are for people to look at.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO_ROOT, module_lab, run_cli, use_lab

from xai_lab import load_dataset, load_model
from xai_lab.explain import METHODS, attribute
from xai_lab.explain.overlay import render_overlay
from xai_lab.model.card import read_model_card

pytestmark = pytest.mark.slow
ARTIFACTS = REPO_ROOT / "test-artifacts" / "overlays"


def evaluate(*args: str) -> dict:
    result = run_cli("explain", "evaluate", *args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def write_examples(model_name: str, data_name: str, prefix: str, count: int = 2) -> None:
    model, _ = load_model(model_name)
    test = load_dataset(data_name)["test"]
    chosen = torch.nonzero(test.labels == 1).flatten()[:count]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for index in chosen.tolist():
        image = test.images[index:index + 1]
        for method in METHODS:
            attribution = attribute(model, image, 1, method)[0]
            picture = render_overlay(image[0], attribution, display_size=384)
            picture.save(ARTIFACTS / f"{prefix}-{test.case_ids[index]}-{method}.png")
            assert picture.height == 384


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    """One lab with the demo's default model, shared by the tests below (it takes ~1.5 min to train)."""
    with module_lab(tmp_path_factory) as home:
        assert run_cli("demo", "--quiet", "--no-serve").code == 0
        yield home


@pytest.fixture
def lab_home(demo_home, monkeypatch):
    return use_lab(demo_home, monkeypatch)


def test_default_model_localises_and_gradients_pass_randomisation(lab_home):
    assert run_cli("train", "--data", "synthetic", "--seed", "1", "--out", lab_home / "models" / "synthetic-seed1",
                   "--quiet").code == 0
    report = evaluate("--model", "synthetic", "--data", "synthetic", "--repeat-model", "synthetic-seed1")
    methods = report["methods"]
    assert report["n_images"] == 200 and set(methods) == set(METHODS)
    # The maps concentrate on the lesion (the best method by relevance mass puts half its mass there), and
    # the method studies show by default points at it. Not "the relevance-mass winner's pointing game":
    # that was guided Grad-CAM's 0.97 on one CPU and 0.82 on another (AMD EPYC, one torch thread: the
    # model's weights differ by thread count), for a method that fails the randomisation check anyway.
    best = max(methods, key=lambda name: methods[name]["relevance_mass"])
    assert methods[best]["relevance_mass"] >= 0.5, methods[best]
    default = report["default_method"]
    assert methods[default]["pointing_game"] >= 0.85, (default, methods[default])
    assert methods["gradcam"]["mprt_pass"] is True and methods["saliency"]["mprt_pass"] is True
    assert isinstance(methods["guided_gradcam"]["mprt_pass"], bool)  # reported as measured, not asserted
    assert all(row["repeatability_spearman"] is not None for row in methods.values())
    card = read_model_card(lab_home / "models" / "synthetic")
    assert card.explanations["default_method"] == report["default_method"] is not None
    write_examples("synthetic", "synthetic", "synthetic")
