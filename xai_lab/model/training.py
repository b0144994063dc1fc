"""Training: seeded, validation-checkpointed, then temperature-scaled and thresholded on validation.

The loop keeps the weights of the epoch with the lowest validation loss (NLL, a proper scoring
rule: it rewards ranking and honest probabilities alike) and stops after `patience` epochs
without improvement, but not before half of `max_epochs`: a small focal finding can take the
network several epochs to "discover", with a flat validation loss until then, and stopping in
that phase would keep an untrained model. The test split is never looked at here.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from xai_lab.data.records import ImageDataset
from xai_lab.errors import ConfigError
from xai_lab.model.calibration import (
    CALIBRATION_PRIORS,
    THRESHOLD_RULES,
    choose_threshold,
    fit_temperature,
    prior_logit_bias,
)
from xai_lab.model.evaluation import uncalibrated_logits
from xai_lab.model.network import ImageClassifier, NetworkSpec, resize_images

MAX_DEFAULT_INPUT = 128  # larger images are read by the network at 128 px: CPU cost grows with area


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    max_epochs: int = 24
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 6
    input_size: int | None = None  # default: the image size, capped at 128 px
    augment: bool = True
    threshold_rule: str = "youden"
    calibration_prior: str = "balanced"

    def validate(self) -> None:
        if self.max_epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.max_epochs}")
        if self.batch_size < 2:
            raise ConfigError(f"batch size must be at least 2, got {self.batch_size}")
        if self.input_size is not None and not 16 <= self.input_size <= 512:
            raise ConfigError(f"--input-size must be between 16 and 512 pixels, got {self.input_size}")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ConfigError(f"--threshold-rule must be one of {', '.join(THRESHOLD_RULES)}, "
                              f"got {self.threshold_rule!r}")
        if self.calibration_prior not in CALIBRATION_PRIORS:
            raise ConfigError(f"--prior must be one of {', '.join(CALIBRATION_PRIORS)}, got {self.calibration_prior!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingResult:
    model: ImageClassifier
    config: TrainConfig
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def train_classifier(dataset: ImageDataset, config: TrainConfig = TrainConfig(),
                     progress: bool = True) -> TrainingResult:
    """Fit a `SmallCNN` on the train split, checkpoint on val, calibrate on val."""
    config.validate()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train, val = dataset["train"], dataset["val"]
    input_size = config.input_size or min(max(train.images.shape[-2:]), MAX_DEFAULT_INPUT)
    train_x, val_x = _at_size(train.images, input_size), _at_size(val.images, input_size)
    mean, std = _channel_stats(train_x)
    spec = NetworkSpec.for_input(train_x.shape[1], len(dataset.class_names), input_size)
    model = ImageClassifier(spec, mean, std).to(memory_format=torch.channels_last)

    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = learning_rate_schedule(optimiser, config.learning_rate,
                                      config.max_epochs * math.ceil(len(train_x) / config.batch_size))
    result = TrainingResult(model=model, config=config)
    best_loss, best_state, stale = math.inf, None, 0
    epochs = tqdm(range(1, config.max_epochs + 1), desc=f"training on {dataset.name}", unit="epoch",
                  disable=not progress, leave=False)
    for epoch in epochs:
        train_loss = _train_one_epoch(model, train_x, train.labels, config, optimiser, schedule, generator)
        val_loss, val_auroc = _validation_scores(model, val_x, val.labels)
        result.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                               "val_auroc": None if math.isnan(val_auroc) else val_auroc,
                               "seconds": round(time.perf_counter() - started, 2)})
        epochs.set_postfix(train_loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}", val_auroc=f"{val_auroc:.3f}")
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, stale, result.best_epoch = val_loss, copy.deepcopy(model.state_dict()), 0, epoch
        else:
            stale += 1
            if stale >= config.patience and epoch >= config.max_epochs // 2:
                break
    model.load_state_dict(best_state)
    model.eval()
    _calibrate(model, val_x, val.labels, train.labels, config)
    result.seconds = time.perf_counter() - started
    return result


ONE_CYCLE_MIN_STEPS = 10  # below this a warm-up phase is under two steps long


def learning_rate_schedule(optimiser: torch.optim.Optimizer, learning_rate: float,
                           total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle (20% warm-up) for real runs; a constant rate for runs of a few optimiser steps
    (`--epochs 1` on a tiny set), where PyTorch's one-cycle divides by a zero-length phase
    (total_steps = 5 with a 20% warm-up) and a cycle would mean nothing anyway."""
    if total_steps < ONE_CYCLE_MIN_STEPS:
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=learning_rate, pct_start=0.2,
                                               total_steps=total_steps)


def _train_one_epoch(model, images, labels, config, optimiser, schedule, generator) -> float:
    model.train()
    order = torch.randperm(len(images), generator=generator)
    total, count = 0.0, 0
    for start in range(0, len(order), config.batch_size):
        batch = order[start:start + config.batch_size]
        if len(batch) < 2:  # BatchNorm cannot train on a single image
            continue
        x = images[batch]
        if config.augment:
            x = augment_batch(x, generator)
        loss = F.cross_entropy(model.uncalibrated_logits(x.contiguous(memory_format=torch.channels_last)),
                               labels[batch])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        total += float(loss.detach()) * len(batch)
        count += len(batch)
    return total / max(count, 1)


@torch.no_grad()
def _validation_scores(model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = uncalibrated_logits(model, images)
    loss = float(F.cross_entropy(logits, labels))
    probabilities = torch.softmax(logits, 1).numpy()
    try:
        if probabilities.shape[1] == 2:
            auroc = float(roc_auc_score(labels.numpy(), probabilities[:, 1]))
        else:
            auroc = float(roc_auc_score(labels.numpy(), probabilities, multi_class="ovr"))
    except ValueError:  # a class missing from a tiny validation split
        auroc = float("nan")
    return loss, auroc


def _calibrate(model: ImageClassifier, val_images: torch.Tensor, val_labels: torch.Tensor,
               train_labels: torch.Tensor, config: TrainConfig) -> None:
    """Temperature on validation (Guo et al. 2017), the prior offset, then the binary threshold."""
    logits = uncalibrated_logits(model, val_images)
    model.temperature.fill_(fit_temperature(logits, val_labels))
    bias = prior_logit_bias(train_labels.numpy(), model.spec.n_classes, config.calibration_prior)
    model.logit_bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    if model.spec.n_classes == 2:
        p_positive = torch.softmax(logits / model.temperature + model.logit_bias, 1)[:, 1].numpy()
        model.threshold.fill_(choose_threshold(p_positive, val_labels.numpy(), config.threshold_rule))


def augment_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-image random affine (rotation +-10 deg, scale 0.9-1.1, shift +-6%) and exposure jitter.

    torchvision's v2 transforms draw one set of parameters per call, i.e. per batch; drawing
    them per image needs a call per image, so the affine is built here with affine_grid.
    No flips: chest anatomy is not left-right symmetric, and side markers would flip too.
    """
    n = images.shape[0]
    uniform = lambda low, high: low + (high - low) * torch.rand(n, generator=generator)  # noqa: E731
    angle = uniform(-10, 10) * math.pi / 180
    scale = uniform(0.9, 1.1)
    shift_x, shift_y = uniform(-0.06, 0.06), uniform(-0.06, 0.06)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = uniform(0.9, 1.1).view(n, 1, 1, 1)
    offset = uniform(-0.05, 0.05).view(n, 1, 1, 1)
    return (moved * gain + offset).clamp_(0.0, 1.0)


def _at_size(images: torch.Tensor, size: int) -> torch.Tensor:
    return images if images.shape[-2:] == (size, size) else resize_images(images, size)


def _channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [float(m) for m in mean], [float(s) for s in std]
