"""The opt-in wall-clock training budget (`--time-budget`): how many epochs fit, what it cut.

A budget makes the number of epochs, and so the model, depend on how fast and how busy the
machine is. The default recipe therefore has none: it trains a fixed number of epochs and is the
same for a seed whatever the load (`xai_lab.model.training`). A budget is for a user who must hold
a wall-clock limit and accepts that the card then records a machine-dependent model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

BUDGET_SHARE_FOR_EPOCHS = 0.9  # the rest is kept for restoring the best weights and calibration
REPLAN_EPOCHS = 2  # the first epoch pays one-off costs (allocation, kernel choice); the second is typical


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
    fitting_epochs: int | None = None  # what the budget alone would have allowed, the last time it was planned

    def replan(self, done: int, epoch_seconds: float, elapsed: float) -> bool:
        """Count the epochs that fit from the last epoch's time; True when the plan changed."""
        if not math.isfinite(self.seconds):
            return False
        self.epoch_seconds = round(epoch_seconds, 2)
        # 10% of the budget is kept for what follows the last epoch (restoring the best weights, calibration).
        fitting = done + int(max(0.0, BUDGET_SHARE_FOR_EPOCHS * self.seconds - elapsed) // max(epoch_seconds, 1e-6))
        self.fitting_epochs = fitting
        planned = min(self.max_epochs, max(done, fitting, 1))
        changed, self.planned_epochs = planned != self.planned_epochs, planned
        return changed

    def out_of_time(self, done: int, elapsed: float, epoch_seconds: float) -> bool:
        """Whether to stop after epoch `done`: the next epoch would overrun the budget."""
        return done < self.planned_epochs and elapsed + epoch_seconds > self.seconds

    @property
    def cut(self) -> str | None:
        """The budget's effect in words, or None when it took nothing away."""
        if self.stopped_by_budget:
            return (f"the {self.seconds:.0f} s budget stopped training before its {self.planned_epochs} planned "
                    f"epochs (of {self.max_epochs} allowed by --epochs)")
        if self.planned_epochs < self.max_epochs:
            return (f"the {self.seconds:.0f} s budget allowed {self.planned_epochs} of {self.max_epochs} epochs "
                    f"(about {self.epoch_seconds:.1f} s each)")
        return None

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": self.seconds if math.isfinite(self.seconds) else None, "cut": self.cut}


def budget_for(time_budget: float | None, max_epochs: int) -> BudgetRecord:
    """The budget of a run: `time_budget` seconds, or none (None or 0: `max_epochs` decide)."""
    if not time_budget:
        return BudgetRecord(math.inf, "none: the default recipe trains a fixed number of epochs", max_epochs,
                            max_epochs)
    return BudgetRecord(float(time_budget), "--time-budget", max_epochs, max_epochs)
