"""Training: seeded, a fixed number of epochs, checkpointed on validation, then temperature-scaled
and thresholded on validation.

The default recipe never looks at the clock: the epochs, the batch size and the learning rate follow
from the data (`TrainConfig.resolved`), so a busy or a slow machine takes longer but trains the same
weights as the same machine idle (bit for bit; another CPU or thread count may round floats
differently, never change the recipe). Why: with a wall-clock
budget the default synthetic model got 16 epochs on a loaded 2-core machine and never learned
(test AUROC 0.61), while idle runs got 24 and learned (docs/benchmarks.md, "A default that learns
on every machine"). `--time-budget` remains as an opt-in hard limit (`BudgetRecord`).

The one-cycle learning-rate schedule is laid out over the planned epochs and the whole cycle is
trained; the kept weights are those of the epoch with the lowest validation NLL *at its best
temperature*. Why both, measured on PneumoniaMNIST (docs/benchmarks.md): stopping after 6 epochs
without improvement kept weights from the middle of the cycle, at a high learning rate (best
epoch 4 of 10 in one seed: AUROC 0.973, ECE 0.076); and plain validation NLL prefers early,
under-confident epochs that temperature scaling would have fixed anyway. `patience` and
`checkpoint="val_loss"` restore the earlier rules. The test split is never looked at here.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from xai_lab.data.records import ImageDataset
from xai_lab.errors import ConfigError
from xai_lab.model.budget import REPLAN_EPOCHS, BudgetRecord, budget_for
from xai_lab.model.calibration import (
    CALIBRATION_PRIORS,
    THRESHOLD_RULES,
    choose_threshold,
    fit_temperature,
    prior_logit_bias,
)
from xai_lab.model.evaluation import uncalibrated_logits
from xai_lab.model.network import BACKBONES, ImageClassifier, NetworkSpec, resize_images
from xai_lab.model.resnet import RESNET_MIN_INPUT

MAX_DEFAULT_INPUT = 128  # larger images are read by the network at 128 px: CPU cost grows with area
CHECKPOINT_RULES = ("val_loss", "scaled_val_loss")
AUTO_MEMBERS = 3  # the ensemble chosen for small training sets without --members
SMALL_TRAINING_SET = 1000
# Training sets under this size get `SMALL_SET_BATCH` images a batch instead of `LARGE_SET_BATCH`.
# Measured on the default synthetic set (1,400 training images, lesions about 1% of the image):
# with 64 a batch an epoch is 22 optimiser steps, and the network sat at chance for 13 of 24 epochs
# before it found the lesion (16 epochs: never, test AUROC 0.61); with 32 it found it by epoch 8-10
# and had converged by epoch 12-14 in seeds 0-2 (docs/benchmarks.md). Larger sets already take
# enough steps per epoch and keep the recipe issue 16 measured.
SMALL_SET_BATCH, LARGE_SET_BATCH, SMALL_BATCH_BELOW = 32, 64, 2000
BASE_LEARNING_RATE, BASE_BATCH = 3e-3, 64


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    max_epochs: int = 24
    batch_size: int | None = None  # None: by the training set's size (`_batch_size`)
    learning_rate: float | None = None  # None: 3e-3 at 64 a batch, scaled by the square root of the batch size
    weight_decay: float = 1e-4
    # Stop after this many epochs without a better checkpoint; None: train the whole planned cycle.
    patience: int | None = None
    # What picks the kept epoch: "scaled_val_loss" (validation NLL at the temperature calibration
    # will fit, so an epoch is not judged on confidence it will lose) or "val_loss" (plain NLL).
    checkpoint: str = "scaled_val_loss"
    input_size: int | None = None  # default: the image size, capped at 128 px
    augment: bool = True
    threshold_rule: str = "youden"
    calibration_prior: str = "balanced"
    # Networks in the deep ensemble (probabilities averaged); None: by the training set's size (`_members`).
    members: int | None = None
    backbone: str = "small_cnn"  # or "resnet18": torchvision's, with ImageNet weights (downloaded once)
    label_smoothing: float = 0.0
    # Wall-clock seconds for fit and calibration, a hard limit that makes the epochs depend on the
    # machine; None or 0: none, max_epochs decide (the default: the same model whatever the load).
    time_budget: float | None = None

    def validate(self) -> None:
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be at least 1 epoch (or None for none), got {self.patience}")
        if self.max_epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.max_epochs}")
        if self.members is not None and not 1 <= self.members <= 8:
            raise ConfigError(f"--members must be between 1 and 8, got {self.members}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"--backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.backbone != "small_cnn" and self.members not in (None, 1):
            raise ConfigError(f"--backbone {self.backbone} trains one network; drop --members (an ensemble of "
                              "pretrained networks would not fit a CPU time budget)")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"--label-smoothing must be at least 0 and below 0.5, got {self.label_smoothing}")
        if self.time_budget is not None and self.time_budget != 0 and \
                not (math.isfinite(self.time_budget) and self.time_budget >= 5):
            raise ConfigError(f"--time-budget must be at least 5 seconds (or 0 for none), got {self.time_budget}")
        if self.checkpoint not in CHECKPOINT_RULES:
            raise ConfigError(f"checkpoint must be one of {', '.join(CHECKPOINT_RULES)}, got {self.checkpoint!r}")
        if self.batch_size is not None and self.batch_size < 2:
            raise ConfigError(f"batch size must be at least 2, got {self.batch_size}")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning rate must be above 0 and below 1, got {self.learning_rate}")
        if self.input_size is not None and not 16 <= self.input_size <= 512:
            raise ConfigError(f"--input-size must be between 16 and 512 pixels, got {self.input_size}")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ConfigError(f"--threshold-rule must be one of {', '.join(THRESHOLD_RULES)}, "
                              f"got {self.threshold_rule!r}")
        if self.calibration_prior not in CALIBRATION_PRIORS:
            raise ConfigError(f"--prior must be one of {', '.join(CALIBRATION_PRIORS)}, got {self.calibration_prior!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def resolved(self, n_train: int) -> tuple[TrainConfig, dict[str, str]]:
        """This config with every data-dependent default filled in, and why each value was chosen.

        Only the data decides (never the machine's speed), so a seed gives the same weights everywhere.
        """
        members, members_why = _members(self, n_train)
        batch, batch_why = _batch_size(self, n_train)
        if self.learning_rate is not None:
            rate, rate_why = self.learning_rate, "learning rate given"
        else:
            # Square-root scaling keeps Adam's update noise about constant when the batch changes
            # (Malladi et al., NeurIPS 2022); 3e-3 at 64 a batch is the rate the recipe was measured at.
            rate = BASE_LEARNING_RATE * math.sqrt(batch / BASE_BATCH)
            rate_why = f"3e-3 at {BASE_BATCH} a batch, scaled by the square root of the batch size"
        concrete = replace(self, members=members, batch_size=batch, learning_rate=rate)
        return concrete, {"members": members_why, "batch_size": batch_why, "learning_rate": rate_why}


@dataclass
class TrainingResult:
    model: ImageClassifier
    config: TrainConfig
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    budget: BudgetRecord | None = None
    pretrained: str | None = None  # the weights a pretrained backbone started from
    # why each data-dependent setting (members, batch size, learning rate) has its value
    choices: dict[str, str] = field(default_factory=dict)


def train_classifier(dataset: ImageDataset, config: TrainConfig = TrainConfig(),
                     progress: bool = True) -> TrainingResult:
    """Fit a `SmallCNN` (or an ensemble of them) on the train split for the planned epochs (or
    within an opt-in time budget), checkpoint on val, calibrate on val."""
    config.validate()
    config, choices = config.resolved(len(dataset["train"].labels))
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train, val = dataset["train"], dataset["val"]
    input_size = config.input_size or _default_input_size(max(train.images.shape[-2:]), config.backbone)
    train_x, val_x = _at_size(train.images, input_size), _at_size(val.images, input_size)
    mean, std = _channel_stats(train_x)
    budget = budget_for(config.time_budget, config.max_epochs)
    spec = NetworkSpec.for_backbone(config.backbone, train_x.shape[1], len(dataset.class_names), input_size,
                                    members=config.members)
    model = ImageClassifier(spec, mean, std)
    pretrained = model.network.load_pretrained(progress=progress) if config.backbone == "resnet18" else None
    model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = learning_rate_schedule(optimiser, config.learning_rate, budget.planned_epochs * steps_per_epoch)
    result = TrainingResult(model=model, config=config, budget=budget, pretrained=pretrained,
                            choices=choices)
    best_loss, best_state, stale, epoch = math.inf, None, 0, 0
    bar = tqdm(total=budget.planned_epochs, desc=f"training on {dataset.name}", unit="epoch", disable=not progress,
               leave=False)
    while epoch < budget.planned_epochs:
        epoch += 1
        epoch_started = time.perf_counter()
        train_loss = _train_one_epoch(model, train_x, train.labels, config, optimiser, schedule, generator)
        val_loss, scaled_val_loss, val_auroc = _validation_scores(model, val_x, val.labels)
        now = time.perf_counter()
        result.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                               "scaled_val_loss": scaled_val_loss,
                               "val_auroc": None if math.isnan(val_auroc) else val_auroc,
                               "seconds": round(now - started, 2)})
        criterion = scaled_val_loss if config.checkpoint == "scaled_val_loss" else val_loss
        if epoch <= REPLAN_EPOCHS and budget.replan(epoch, now - epoch_started, now - started):
            schedule = learning_rate_schedule(optimiser, config.learning_rate, budget.planned_epochs * steps_per_epoch,
                                              done_steps=epoch * steps_per_epoch)
            bar.total = budget.planned_epochs
        bar.update()
        bar.set_postfix(val_loss=f"{val_loss:.3f}", val_auroc=f"{val_auroc:.3f}",
                        **({"time_left": f"{max(0.0, budget.seconds - (now - started)):.0f}s"}
                           if math.isfinite(budget.seconds) else {}))
        if criterion < best_loss - 1e-4:
            best_loss, best_state, stale, result.best_epoch = criterion, copy.deepcopy(model.state_dict()), 0, epoch
        else:
            stale += 1
            if config.patience is not None and stale >= config.patience and epoch >= budget.planned_epochs // 2:
                break
        if budget.out_of_time(epoch, now - started, now - epoch_started):
            budget.stopped_by_budget = True
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    _calibrate(model, val_x, val.labels, train.labels, config)
    result.seconds = time.perf_counter() - started
    return result


def _members(config: TrainConfig, n_train: int) -> tuple[int, str]:
    """The ensemble size: --members, else `AUTO_MEMBERS` for training sets under
    `SMALL_TRAINING_SET` images and one network for larger ones.

    Why by size: a network trained on a few hundred images varies from seed to seed, and averaging
    three cut the test Brier score in 3 of 4 seeds and the ECE by a quarter (PneumoniaMNIST cut to
    546 training images); on the full set (4,708) three members got too few epochs of the budget
    and lost to one network, and were best only when given twice the time (docs/benchmarks.md).
    The rule uses the data, not the machine's speed, so the same data and seed give the same
    architecture everywhere; the budget then decides the epochs.
    """
    if config.members is not None:
        return config.members, "--members"
    if config.backbone != "small_cnn":
        return 1, f"one network for --backbone {config.backbone}"
    if n_train < SMALL_TRAINING_SET:
        return AUTO_MEMBERS, f"default for under {SMALL_TRAINING_SET:,} training images"
    return 1, f"default for {SMALL_TRAINING_SET:,} or more training images"


def _batch_size(config: TrainConfig, n_train: int) -> tuple[int, str]:
    """The batch: given, else `SMALL_SET_BATCH` under `SMALL_BATCH_BELOW` training images (more
    optimiser steps per epoch, which small sets need to leave the early plateau), else `LARGE_SET_BATCH`."""
    if config.batch_size is not None:
        return config.batch_size, "batch size given"
    if n_train < SMALL_BATCH_BELOW:
        return SMALL_SET_BATCH, f"default for under {SMALL_BATCH_BELOW:,} training images"
    return LARGE_SET_BATCH, f"default for {SMALL_BATCH_BELOW:,} or more training images"


ONE_CYCLE_MIN_STEPS = 10  # below this a warm-up phase is under two steps long


def learning_rate_schedule(optimiser: torch.optim.Optimizer, learning_rate: float, total_steps: int,
                           done_steps: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle (20% warm-up) for real runs; a constant rate for runs of a few optimiser steps
    (`--epochs 1` on a tiny set), where PyTorch's one-cycle divides by a zero-length phase
    (total_steps = 5 with a 20% warm-up) and a cycle would mean nothing anyway.

    done_steps: steps already taken under an earlier plan; the new cycle resumes at that step.
    """
    if total_steps < ONE_CYCLE_MIN_STEPS:
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)
    # last_epoch resumes the cycle; the optimiser already carries the cycle's initial rates from
    # the first plan (the same max_lr and factors), which resuming requires.
    return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=learning_rate, pct_start=0.2,
                                               total_steps=total_steps, last_epoch=done_steps - 1)


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
        loss = member_loss(model, x.contiguous(memory_format=torch.channels_last), labels[batch],
                           config.label_smoothing)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        total += float(loss.detach()) * len(batch)
        count += len(batch)
    return total / max(count, 1)


def member_loss(model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor,
                label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean over members of each member's own cross-entropy.

    Members of a deep ensemble are trained independently, each on its own loss; training the
    averaged prediction instead lets members co-adapt and loses the diversity that makes the
    ensemble better than one network (Jeffares et al., NeurIPS 2023). One member: the usual loss.
    """
    member_logits = model.network.member_logits(model.prepare(images))
    n, members, classes = member_logits.shape
    return F.cross_entropy(member_logits.reshape(n * members, classes), labels.repeat_interleave(members),
                           label_smoothing=label_smoothing)


def _validation_scores(model: ImageClassifier, images: torch.Tensor,
                       labels: torch.Tensor) -> tuple[float, float, float]:
    """Validation NLL, NLL at the best temperature for this epoch, and AUROC."""
    model.eval()
    logits = uncalibrated_logits(model, images)
    loss = float(F.cross_entropy(logits, labels))
    scaled_loss = float(F.cross_entropy(logits / fit_temperature(logits, labels), labels))
    probabilities = torch.softmax(logits, 1).numpy()
    try:
        if probabilities.shape[1] == 2:
            auroc = float(roc_auc_score(labels.numpy(), probabilities[:, 1]))
        else:
            auroc = float(roc_auc_score(labels.numpy(), probabilities, multi_class="ovr"))
    except ValueError:  # a class missing from a tiny validation split
        auroc = float("nan")
    return loss, scaled_loss, auroc


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


def _default_input_size(image_size: int, backbone: str) -> int:
    """The image's own size, capped at 128 px; at least 64 px for ResNet-18 (see `RESNET_MIN_INPUT`)."""
    size = min(image_size, MAX_DEFAULT_INPUT)
    return max(size, RESNET_MIN_INPUT) if backbone == "resnet18" else size


def _at_size(images: torch.Tensor, size: int) -> torch.Tensor:
    return images if images.shape[-2:] == (size, size) else resize_images(images, size)


def _channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [float(m) for m in mean], [float(s) for s in std]
