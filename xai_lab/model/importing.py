"""`xai-lab model import`: a network trained elsewhere becomes a lab model folder with a card.

The declaration (`ModelDeclaration`) is checked against the dataset the model is evaluated on before
anything is written: classes, channels, what the network returns. The card says where the model came
from (file hash, route, what was declared), that xai-lab did not train it, whether its probabilities
are its own or recalibrated here, and how it performs on the named dataset with 95% CIs.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from xai_lab.data.records import NOT_FOR_CLINICAL_USE, ImageDataset
from xai_lab.data.storage import load_dataset
from xai_lab.errors import ConfigError, ModelError
from xai_lab.model.calibration import ECE_BINS, THRESHOLD_RULES, calibration_claim, choose_threshold, fit_temperature
from xai_lab.model.card import CARD_VERSION, ModelCard, read_model_card
from xai_lab.model.evaluation import calibration_report, evaluate_split, uncalibrated_logits
from xai_lab.model.imported import (
    TORCHSCRIPT_FILE,
    ImportedNetwork,
    ModelDeclaration,
    build_from_factory,
    check_layer,
    code_identity,
    imported_spec,
    last_convolution,
    load_state,
    load_torchscript,
    no_inplace_relu,
    separate_reused_relus,
    trust_code,
)
from xai_lab.model.network import ImageClassifier
from xai_lab.model.storage import save_model, software_versions
from xai_lab.paths import model_dir

NOT_TRAINED_HERE = "not trained by xai-lab"


@dataclass(frozen=True)
class ImportRequest:
    """One `xai-lab model import`: the network's file(s), its declaration, and the data it is judged on."""

    declaration: ModelDeclaration
    source: Path  # the TorchScript file, or the factory's state_dict
    data: str  # the dataset it is evaluated on (and whose classes it must predict)
    name: str
    calibrate_on: str | None = None  # a dataset whose validation split fits temperature and threshold
    threshold: float = 0.5  # the vendor's operating point on P(finding), kept when not recalibrated
    threshold_rule: str = "youden"
    trust_code: bool = False
    overwrite: bool = False


def read_declaration(path: Path | None, given: dict[str, Any], route: str) -> ModelDeclaration:
    """The declaration from a TOML file (optional) with command-line values over it; one line on a gap."""
    declared: dict[str, Any] = {}
    if path is not None:
        try:
            declared = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"the model declaration {path} cannot be read ({error}); fix the TOML") from None
    known = {f.name for f in fields(ModelDeclaration)} - {"route"}
    unknown = sorted(set(declared) - known)
    if unknown:
        raise ConfigError(f"{path} declares unknown keys {unknown}; the keys are {sorted(known)}")
    declared.update({key: value for key, value in given.items() if value is not None})
    missing = [key for key in ("class_names", "input_size", "channels", "mean", "std") if key not in declared]
    if missing:
        raise ConfigError(f"declare the model's {', '.join(missing)} (in a TOML beside it, or --classes, "
                          "--input-size, --channels, --mean, --std): the lab does not guess how a network reads images")
    try:
        declaration = ModelDeclaration(route=route, **declared)
    except TypeError as error:
        raise ConfigError(f"the model declaration is incomplete ({error})") from None
    problem = declaration.problem()
    if problem:
        raise ConfigError(f"model declaration: {problem}")
    return declaration


def import_model(request: ImportRequest) -> tuple[ModelCard, Path]:
    """Check, wrap, optionally recalibrate, evaluate and save the network; returns (card, folder)."""
    declaration = request.declaration
    out_dir = model_dir(request.name)
    if out_dir.exists() and not request.overwrite:
        raise ModelError(f"a model named {request.name!r} already exists in {out_dir}; choose another --name or "
                         "pass --overwrite")
    if request.threshold_rule not in THRESHOLD_RULES or not 0.0 < request.threshold < 1.0:
        raise ConfigError("--threshold must lie strictly between 0 and 1, and --threshold-rule be one of "
                          f"{THRESHOLD_RULES}")
    dataset = load_dataset(request.data)
    order = class_order(declaration, dataset)
    network = _network(request)
    gradcam = None if declaration.route == "torchscript" else (
        check_layer(network, declaration.gradcam_layer) if declaration.gradcam_layer else last_convolution(network))
    spec = imported_spec(dataset.card.channels, len(dataset.class_names), declaration.input_size)
    model = ImageClassifier(spec, declaration.mean, declaration.std,
                            network=ImportedNetwork(network, declaration.outputs, order, gradcam)).eval()
    warnings = check_outputs(model, dataset, declaration)
    calibration = _calibrate(model, request, dataset)
    card = _card(model, request, dataset, gradcam, order, calibration, warnings)
    files = {TORCHSCRIPT_FILE: request.source} if declaration.route == "torchscript" else {}
    save_model(model, card, out_dir, overwrite=True, files=files)
    trust_code(*code_identity(card["architecture"], out_dir))
    return read_model_card(out_dir), out_dir


def class_order(declaration: ModelDeclaration, dataset: ImageDataset) -> list[int]:
    """The network's output index of each of the dataset's classes; refuses classes that do not match."""
    classes = list(dataset.class_names)
    if sorted(declaration.class_names) != sorted(classes):
        raise ModelError(f"the model predicts {declaration.class_names} but dataset '{dataset.name}' has {classes}; "
                         "declare the model's classes by the dataset's names, or import it with a dataset of its "
                         "classes")
    finding = classes[1] if len(classes) == 2 else None
    if declaration.finding is not None and finding is not None and declaration.finding != finding:
        raise ModelError(f"the declared finding {declaration.finding!r} is not dataset '{dataset.name}''s finding "
                         f"{finding!r} (its second class); studies ask about {finding!r}")
    channels = dataset.card.channels
    if channels != declaration.channels and channels != 1:
        raise ModelError(f"the model reads {declaration.channels}-channel images but dataset '{dataset.name}' has "
                         f"{channels}; declare channels = {channels}")
    return [declaration.class_names.index(name) for name in classes]


def check_outputs(model: ImageClassifier, dataset: ImageDataset, declaration: ModelDeclaration) -> list[str]:
    """Run the network on a few validation images: the shape and range it returns must match the declaration."""
    images = dataset["val"].images[:8]
    try:
        with torch.no_grad():
            raw = model.network.imported(model.prepare(images))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0][:160]
        raise ModelError(f"the network fails on {declaration.input_size}-px, {declaration.channels}-channel input "
                         f"({first}); check --input-size and --channels") from None
    raw = raw[0] if isinstance(raw, (tuple, list)) else raw
    expected = 1 if declaration.outputs == "binary_logit" else len(declaration.class_names)
    if raw.ndim != 2 or raw.shape[1] != expected:
        raise ModelError(f"the network returns shape {tuple(raw.shape)}, but {declaration.outputs} for "
                         f"{len(declaration.class_names)} classes means (N, {expected}); check the classes, or "
                         "declare outputs = 'binary_logit' for one logit of the finding")
    if not torch.isfinite(raw).all():
        raise ModelError("the network returns NaN or infinite values on validation images; check the normalisation "
                         "(--mean, --std) and the weights")
    looks_like_probabilities = bool(((raw >= 0) & (raw <= 1)).all() and torch.allclose(raw.sum(1), torch.ones(len(raw)),
                                                                                     atol=1e-4))
    if declaration.outputs == "probabilities" and not ((raw >= 0) & (raw <= 1)).all():
        raise ModelError("the network was declared to return probabilities but returns values outside [0, 1]; "
                         "declare outputs = 'logits'")
    if declaration.outputs == "logits" and looks_like_probabilities and expected > 1:
        return ["the network's outputs sum to 1 like probabilities; if it ends in a softmax, import it again with "
                "outputs = 'probabilities' (read as logits, its probabilities are flattened)"]
    return []


def _network(request: ImportRequest) -> torch.nn.Module:
    declaration = request.declaration
    if not request.source.is_file():
        raise ModelError(f"no file at {request.source}; check the path")
    if declaration.route == "torchscript":
        if not request.trust_code:
            raise ModelError(f"{request.source} is TorchScript, which is code that runs when loaded; pass "
                             "--trust-code if you trust its source, or import the model as --factory and --weights")
        return load_torchscript(request.source)
    network = build_from_factory(declaration.factory or "", declaration.factory_kwargs)
    load_state(network, request.source)
    network.eval()
    no_inplace_relu(network)
    separate_reused_relus(network, torch.zeros(1, declaration.channels, declaration.input_size,
                                               declaration.input_size))
    return network


def _calibrate(model: ImageClassifier, request: ImportRequest, dataset: ImageDataset) -> dict[str, Any]:
    """Keep the vendor's probabilities and operating point, or refit temperature and threshold on a dataset's
    validation split (Guo et al. 2017, as for models trained here)."""
    binary = model.spec.n_classes == 2
    if request.calibrate_on is None:
        model.threshold.fill_(request.threshold)
        return {"method": "none: the probabilities are the model's own (not recalibrated by xai-lab)",
                "recalibrated": False, "rule": "declared operating point" if binary else "argmax"}
    calibration_data = load_dataset(request.calibrate_on)
    class_order(request.declaration, calibration_data)
    validation = calibration_data["val"]
    logits = uncalibrated_logits(model, validation.images)
    model.temperature.fill_(fit_temperature(logits, validation.labels))
    if binary:
        p_positive = torch.softmax(logits / model.temperature, 1)[:, 1].numpy()
        model.threshold.fill_(choose_threshold(p_positive, validation.labels.numpy(), request.threshold_rule))
    return {"method": f"temperature scaling (Guo et al. 2017) fitted by xai-lab on '{calibration_data.name}' "
                      "validation split; the model's own probabilities are recalibrated",
            "recalibrated": True, "calibrated_on": calibration_data.name,
            "rule": request.threshold_rule if binary else "argmax"}


def _card(model: ImageClassifier, request: ImportRequest, dataset: ImageDataset, gradcam: str | None,
          order: list[int], calibration: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    from xai_lab.version import __version__

    declaration = request.declaration
    binary = model.spec.n_classes == 2
    metrics = {split: evaluate_split(model, dataset[split]) for split in ("val", "test")}
    source_sha = hashlib.sha256(request.source.read_bytes()).hexdigest()
    route_words = ("TorchScript file: code that runs when loaded, imported with --trust-code"
                   if declaration.route == "torchscript" else
                   f"factory {declaration.factory} with a state_dict loaded with weights_only=True")
    return {
        "card_version": CARD_VERSION,
        "name": request.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {"name": dataset.name, "content_sha256": dataset.card.content_sha256,
                    "class_names": dataset.class_names, "image_size": dataset.card.image_size,
                    "channels": dataset.card.channels, "license": dataset.card.license,
                    "role": "evaluated on (the model was trained elsewhere)"},
        "architecture": {"type": "imported", **model.spec.to_dict(), "route": declaration.route,
                         "factory": declaration.factory, "factory_kwargs": declaration.factory_kwargs,
                         "outputs": declaration.outputs, "class_order": order,
                         "parameters": sum(p.numel() for p in model.network.parameters()),
                         "gradcam_layer": gradcam,
                         "gradcam_layer_source": "declared" if declaration.gradcam_layer else "the last convolution",
                         "network_channels": declaration.channels},
        "preprocessing": {"input_size": declaration.input_size, "resize": "antialiased bilinear",
                          "mean": declaration.mean, "std": declaration.std,
                          "input": "float pixels in [0, 1], N x C x H x W; resized and normalised inside"
                                   + ("; grey repeated to 3 channels" if declaration.channels > dataset.card.channels
                                      else "")},
        "training": {"trained_by": NOT_TRAINED_HERE},
        "provenance": {"trained_by": NOT_TRAINED_HERE, "route": route_words, "source_file": request.source.name,
                       "source_sha256": source_sha, "declared": declaration.to_dict(),
                       "imported_at": datetime.now(UTC).isoformat(timespec="seconds")},
        "calibration": {**calibration, "temperature": float(model.temperature), "prior": "training",
                        "logit_bias": model.logit_bias.tolist(), "ece_bins": f"{ECE_BINS} equal-width bins",
                        "val": calibration_report(model, dataset["val"]),
                        "test": calibration_report(model, dataset["test"]),
                        "claim": calibration_claim(metrics["test"])},
        "decision": {"rule": calibration["rule"], "threshold": float(model.threshold) if binary else None,
                     "applies_to": f"P({dataset.class_names[1]})" if binary else "highest probability"},
        "metrics": metrics,
        "warnings": warnings,
        "versions": software_versions(__version__),
        "intended_use": ("Stimulus and explanation source for human-AI trust experiments; imported, "
                         f"{NOT_TRAINED_HERE}. " + NOT_FOR_CLINICAL_USE),
        "not_for_clinical_use": True,
    }


def describe_import(card: ModelCard) -> list[str]:
    """The lines a terminal shows of an imported model's card."""
    provenance = card.extra.get("provenance", {})
    calibration = card.calibration
    layer = card.architecture.get("gradcam_layer") or "none (TorchScript: layers cannot be hooked)"
    return [f"  {NOT_TRAINED_HERE}: {provenance.get('route', '')}",
            f"  source {provenance.get('source_file')} sha256 {str(provenance.get('source_sha256'))[:16]}...",
            f"  Grad-CAM layer: {layer}",
            f"  probabilities: {calibration.get('method', '')}"]

