"""The wall-clock training budget: how long a run may take, how many epochs fit, what it cut.

The default grows with the training set, so a small set is not given minutes it cannot use and
PneumoniaMNIST's whole `xai-lab train` stays within two minutes on 2 CPU cores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

BUDGET_BASE_SECONDS = 45.0
BUDGET_SECONDS_PER_IMAGE = 0.012
BUDGET_LIMITS = (60.0, 900.0)
BUDGET_SHARE_FOR_EPOCHS = 0.9  # the rest is kept for restoring the best weights and calibration
REPLAN_EPOCHS = 2  # the first epoch pays one-off costs (allocation, kernel choice); the second is typical
# The default budget never plans fewer epochs than this share of --epochs. Measured: in a CI run with
# two test files training at once on 2 cores, the default synthetic model's budget fitted about 8
# epochs and the model did not learn (test AUROC 0.58). A default must not hand a slow or busy
# machine a useless model; an explicit --time-budget is a hard limit.
DEFAULT_MIN_EPOCH_SHARE = 2 / 3


@dataclass
class BudgetRecord:
    """What the wall-clock budget allowed, and whether it cut the run short of `max_epochs`.

    Planned, not only enforced: the learning-rate cycle is first laid out over `max_epochs`; after
    each of the first `REPLAN_EPOCHS` epochs the epochs that fit are counted from the measured epoch
    time, and the cycle is laid out again over them, so a cut run still ends its cycle at a low
    learning rate. After every epoch the loop also stops if the next epoch would overrun.
    """

    seconds: float  # inf: no budget
    source: str  # "--time-budget", or how the default was fitted to the data
    planned_epochs: int
    max_epochs: int
    epoch_seconds: float | None = None  # measured, the last time the plan was made
    stopped_by_budget: bool = False  # the run ended before its planned epochs because time ran out
    min_epochs: int = 1  # the plan never goes below this (the default budget's floor; 1 for --time-budget)
    fitting_epochs: int | None = None  # what the budget alone would have allowed, the last time it was planned

    def replan(self, done: int, epoch_seconds: float, elapsed: float) -> bool:
        """Count the epochs that fit from the last epoch's time; True when the plan changed."""
        if not math.isfinite(self.seconds):
            return False
        self.epoch_seconds = round(epoch_seconds, 2)
        # 10% of the budget is kept for what follows the last epoch (restoring the best weights, calibration).
        fitting = done + int(max(0.0, BUDGET_SHARE_FOR_EPOCHS * self.seconds - elapsed) // max(epoch_seconds, 1e-6))
        self.fitting_epochs = fitting
        planned = min(self.max_epochs, max(done, fitting, self.min_epochs))
        changed, self.planned_epochs = planned != self.planned_epochs, planned
        return changed

    def out_of_time(self, done: int, elapsed: float, epoch_seconds: float) -> bool:
        """Whether to stop after epoch `done`: the next epoch would overrun, and the floor is reached."""
        return done < self.planned_epochs and done >= self.min_epochs and elapsed + epoch_seconds > self.seconds

    @property
    def cut(self) -> str | None:
        """The budget's effect in words, or None when it took nothing away."""
        if self.fitting_epochs is not None and self.fitting_epochs < self.min_epochs <= self.planned_epochs:
            return (f"the default {self.seconds:.0f} s budget fitted only {self.fitting_epochs} epochs on this machine "
                    f"(about {self.epoch_seconds:.1f} s each); it was extended to the default's minimum of "
                    f"{self.min_epochs}; pass --time-budget to hold a limit")
        if self.stopped_by_budget:
            return (f"the {self.seconds:.0f} s budget stopped training before its {self.planned_epochs} planned "
                    f"epochs (of {self.max_epochs} allowed by --epochs)")
        if self.planned_epochs < self.max_epochs:
            return (f"the {self.seconds:.0f} s budget allowed {self.planned_epochs} of {self.max_epochs} epochs "
                    f"(about {self.epoch_seconds:.1f} s each)")
        return None

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": self.seconds if math.isfinite(self.seconds) else None, "cut": self.cut}


def default_time_budget(n_train: int) -> float:
    """Seconds for fit and calibration when --time-budget is not given: 45 s plus 12 ms per
    training image, within 60-900 s. PneumoniaMNIST (4,708 images) gets 101 s, so the whole
    `xai-lab train` (with evaluation and saving) stays within 120 s on 2 CPU cores."""
    low, high = BUDGET_LIMITS
    return float(min(high, max(low, BUDGET_BASE_SECONDS + BUDGET_SECONDS_PER_IMAGE * n_train)))


def budget_for(time_budget: float | None, max_epochs: int, n_train: int) -> BudgetRecord:
    """The budget of a run: `time_budget` seconds (0: none), or the default for `n_train` images."""
    if time_budget == 0:
        return BudgetRecord(math.inf, "none (--time-budget 0)", max_epochs, max_epochs)
    if time_budget is not None:
        return BudgetRecord(float(time_budget), "--time-budget", max_epochs, max_epochs)
    return BudgetRecord(default_time_budget(n_train), f"default for {n_train:,} training images (45 s + 12 ms per "
                        "image, within 60-900 s, at least 2/3 of --epochs)", max_epochs, max_epochs,
                        min_epochs=max(1, math.ceil(DEFAULT_MIN_EPOCH_SHARE * max_epochs)))
