"""Models on disk: ``models/<name>/weights.pt`` (a state_dict) and ``model_card.json``.

Weights are loaded with ``torch.load(..., weights_only=True)``: a model folder from elsewhere
cannot run code on load. The card records everything needed to rebuild the architecture and
to judge the model: the dataset it was trained on (by content hash), the training config,
calibration before and after temperature scaling, validation and test metrics, versions,
and its intended use.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from xai_lab.data.records import NOT_FOR_CLINICAL_USE, ImageDataset
from xai_lab.errors import ModelError
from xai_lab.model.calibration import ECE_BINS, calibration_claim, prior_prevalence
from xai_lab.model.card import (
    CARD_FILE,
    CARD_VERSION,
    WEIGHTS_FILE,
    ModelCard,
    is_advice_set,
    read_model_card,
    resolve_model_dir,
    write_model_folder,
)
from xai_lab.model.evaluation import calibration_report, evaluate_split
from xai_lab.model.imported import rebuild
from xai_lab.model.network import IMPORTED, ImageClassifier, NetworkSpec
from xai_lab.model.training import TrainingResult
from xai_lab.paths import models_root

PRIOR_MEANING = {
    "balanced": "probabilities hold for equal class prevalence (as in balanced study case sets); "
                "add log(prevalence) to the logits for another prevalence",
    "training": "probabilities hold at the training set's class prevalence",
}


def build_model_card(result: TrainingResult, dataset: ImageDataset, name: str) -> dict[str, Any]:
    """Evaluate the trained model on val and test and describe it in one JSON-ready dict."""
    from xai_lab.version import __version__

    model = result.model
    card_file = dataset.path / "card.json"
    binary = model.spec.n_classes == 2
    training_prevalence = _prevalence(dataset)
    prevalence = prior_prevalence(result.config.calibration_prior, training_prevalence)
    metrics = {split: evaluate_split(model, dataset[split], prevalence=prevalence) for split in ("val", "test")}
    return {
        "card_version": CARD_VERSION,
        "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {
            "name": dataset.name,
            "content_sha256": dataset.card.content_sha256,
            "card_sha256": hashlib.sha256(card_file.read_bytes()).hexdigest() if card_file.is_file() else None,
            "class_names": dataset.class_names,
            "image_size": dataset.card.image_size,
            "channels": dataset.card.channels,
            "license": dataset.card.license,
        },
        "architecture": {"type": _architecture_name(model.spec), **model.spec.to_dict(),
                         "pretrained": result.pretrained,
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "gradcam_layer": "network.features[-1]"},
        "preprocessing": {"input_size": model.spec.input_size, "resize": "antialiased bilinear",
                          "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(),
                          "input": "float pixels in [0, 1], N x C x H x W; resized and normalised inside"},
        "training": {"config": result.config.to_dict(), "epochs_run": len(result.history),
                     "best_epoch": result.best_epoch, "seconds": round(result.seconds, 1),
                     "history": result.history, "checkpoint": "lowest validation loss",
                     "budget": result.budget.to_dict() if result.budget else None,
                     "members_source": result.choices.get("members", ""), "choices": result.choices},
        "calibration": {
            "method": "temperature scaling (Guo et al. 2017) fitted on the validation split",
            "temperature": float(model.temperature),
            "prior": result.config.calibration_prior,
            "prior_meaning": PRIOR_MEANING[result.config.calibration_prior],
            "training_prevalence": dict(zip(dataset.class_names, training_prevalence, strict=True)),
            "logit_bias": model.logit_bias.tolist(),
            "ece_bins": f"{ECE_BINS} equal-width bins of top-label confidence",
            "val": calibration_report(model, dataset["val"]),
            "test": calibration_report(model, dataset["test"]),
            "test_ece_at_prior": metrics["test"]["ece_at_prior"],
            "test_ece_at_prior_ci": metrics["test"].get("ece_at_prior_ci"),
            "claim": calibration_claim(metrics["test"]),
        },
        "decision": {
            "rule": result.config.threshold_rule if binary else "argmax",
            "threshold": float(model.threshold) if binary else None,
            "applies_to": f"calibrated P({dataset.class_names[1]})" if binary else "highest calibrated probability",
        },
        "metrics": metrics,
        "warnings": _training_warnings(result),
        "versions": software_versions(__version__),
        "intended_use": ("Stimulus and explanation source for human-AI trust experiments and teaching. "
                         + NOT_FOR_CLINICAL_USE),
        "not_for_clinical_use": True,
    }


def save_model(model: ImageClassifier, card: dict[str, Any], out_dir: Path, overwrite: bool = True,
               files: dict[str, Path] | None = None) -> Path:
    """Write weights and card into `out_dir` atomically (a temporary folder renamed into place).

    files: other files copied in beside them (an imported model's TorchScript file), by name.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ModelError(f"{out_dir} already exists; choose another --out or remove it")

    def fill(staging: Path) -> None:
        torch.save(model.state_dict(), staging / WEIGHTS_FILE)
        for name, source in (files or {}).items():
            shutil.copyfile(source, staging / name)
        signed = {**card, "weights_sha256": _sha256(staging / WEIGHTS_FILE)}
        (staging / CARD_FILE).write_text(json.dumps(signed, indent=2, default=_json_default) + "\n")
    write_model_folder(out_dir, fill)
    return out_dir


def load_model(path: str | Path) -> tuple[ImageClassifier, ModelCard]:
    """Load an eval-mode `ImageClassifier` and its card from a model folder (or a model name)."""
    folder = resolve_model_dir(path)
    if is_advice_set(folder):
        raise ModelError(f"'{folder.name}' is a vendor's advice set (xai-lab advice import), not a network: studies "
                         f"use it with [cases] advice = \"imported:{folder.name}\"; it cannot be run on images")
    card = read_model_card(folder)
    if card.weights_sha256 not in (None, _sha256(folder / WEIGHTS_FILE)):
        raise ModelError(f"the weights in {folder} cannot be loaded: they changed since the model card was "
                         "written (damaged or replaced); retrain with 'xai-lab train'")
    try:
        architecture = card.architecture
        # Fields added later (with defaults that rebuild older models) may be absent from older cards.
        spec = NetworkSpec(**{k: architecture[k] for k in NetworkSpec.__dataclass_fields__ if k in architecture})
        mean, std = card.preprocessing.mean, card.preprocessing.std
        model = rebuild(folder, card.name, architecture, spec, mean, std) if spec.backbone == IMPORTED \
            else ImageClassifier(spec, mean, std)
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:
        redo = "import it again with 'xai-lab model import'" if card.architecture.get("backbone") == IMPORTED \
            else "retrain it with 'xai-lab train'"
        raise ModelError(f"the model in {folder} cannot be loaded ({str(error).splitlines()[0][:160]}); {redo}") \
            from None
    return model.eval(), card


def update_model_card(folder: Path, section: str, content: dict[str, Any]) -> ModelCard:
    """Set one top-level section of a model's card (e.g. the explanation evidence), atomically.

    The weights are not touched, so `weights_sha256` stays valid; the card is written to a
    temporary file and renamed over the old one, so a crash leaves the old card, never half a card.
    """
    folder = resolve_model_dir(folder)
    card = read_model_card(folder).with_section(section, content)
    staging = folder / f".{CARD_FILE}.tmp"
    staging.write_text(json.dumps(card.to_json(), indent=2, default=_json_default) + "\n")
    staging.replace(folder / CARD_FILE)
    return card


def list_models() -> list[tuple[Path, ModelCard]]:
    """(folder, card) of every readable model under ``XAI_LAB_HOME/models``."""
    root = models_root()
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if is_advice_set(folder):  # a vendor's outputs: nothing to run
            continue
        try:
            found.append((folder, read_model_card(resolve_model_dir(folder))))
        except ModelError:
            continue
    return found


def check_model_fits(card: ModelCard, dataset: ImageDataset, external: bool = False) -> None:
    """Refuse to evaluate a model on data it was not trained for, unless asked (external validation)."""
    trained_on = card.dataset
    if list(trained_on.class_names) != list(dataset.class_names) or trained_on.channels != dataset.card.channels:
        raise ModelError(
            f"model '{card.name}' predicts {trained_on.class_names} from "
            f"{trained_on.channels}-channel images, but dataset '{dataset.name}' has "
            f"{dataset.class_names} with {dataset.card.channels} channel(s); use a model trained on this dataset"
        )
    if not external and trained_on.content_sha256 != dataset.card.content_sha256:
        raise ModelError(
            f"model '{card.name}' was trained on dataset '{trained_on.name}', not on "
            f"'{dataset.name}' (content hashes differ); pass --data {trained_on.name}, or --external to "
            "validate it on other data with the same classes"
        )


def _training_warnings(result: TrainingResult) -> list[str]:
    """Plain-language flags for a model that should not be used as it is."""
    best = next((h for h in result.history if h["epoch"] == result.best_epoch), None)
    warnings = []
    if best is not None and best.get("val_auroc") is not None and best["val_auroc"] < 0.6:
        warnings.append(f"validation AUROC is {best['val_auroc']:.2f}: the model barely beats chance; train longer "
                        "(--epochs) or check the data")
    budget = result.budget
    cut = budget.cut if budget else None
    if result.best_epoch == len(result.history) and (cut or result.best_epoch == result.config.max_epochs):
        fix = "a larger --time-budget" if cut else "more --epochs"
        warnings.append(f"the best validation loss came at the last epoch; {fix} may help")
    return warnings


def _architecture_name(spec: NetworkSpec) -> str:
    if spec.backbone == "resnet18":
        return "ResNet-18 (torchvision)"
    return "SmallCNN" if spec.members == 1 else f"deep ensemble of {spec.members} SmallCNNs (probabilities averaged)"


def _prevalence(dataset: ImageDataset) -> list[float]:
    labels = dataset["train"].labels
    return (torch.bincount(labels, minlength=len(dataset.class_names)).float() / max(len(labels), 1)).tolist()


def software_versions(xai_lab_version: str) -> dict[str, str]:
    return {"xai_lab": xai_lab_version, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    raise TypeError(f"cannot serialise {type(value).__name__}")
