"""The quality gate: a model is served to clinicians only if it has shown, on validation data,
that it does better than a floor the researcher (or the dataset) declared.

Why a gate and not a warning: a model that did not learn still produces probabilities and maps,
and a study shows them to clinicians as "the AI". On a busy machine the old default recipe
handed the demo a model at validation AUROC 0.61 whose maps outlined the spine; the card warned,
and the study served it anyway. A trust experiment on such an AI measures nothing.

The rule: the lower bound of the validation AUROC's 95% bootstrap interval (on the model card)
must reach the floor. The lower bound, not the estimate, so a small validation split cannot pass
a model by luck. The floor comes from, in order: the design (`[data] min_val_auroc`), the dataset
card (`min_val_auroc`; the synthetic generator declares `SYNTHETIC_MIN_VAL_AUROC`), else
`DEFAULT_MIN_VAL_AUROC`. Only validation metrics are read: the test split stays untouched for
the card's reported performance.

Reads model and dataset cards as JSON only (no torch), so `serve` can check before it starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from xai_lab.errors import ModelError
from xai_lab.model.card import ModelCard
from xai_lab.paths import dataset_dir

# The synthetic lesion is learnable: the default recipe reaches validation AUROC 0.93-0.95 (lower
# bounds 0.90-0.93) in seeds 0-2; a model below 0.85 has missed it (docs/benchmarks.md).
SYNTHETIC_MIN_VAL_AUROC = 0.85
# Data the lab knows nothing about: well above chance, yet low enough for hard real tasks. A
# study on such data should declare its own floor in [data] min_val_auroc.
DEFAULT_MIN_VAL_AUROC = 0.70


@dataclass(frozen=True)
class QualityVerdict:
    """Whether a model may be served, with the numbers and where the floor came from."""

    model: str
    passed: bool
    floor: float
    floor_source: str
    val_auroc: float | None
    val_auroc_ci: tuple[float, float] | None

    @property
    def sentence(self) -> str:
        measured = "no validation AUROC on its card" if self.val_auroc is None else (
            f"validation AUROC {self.val_auroc:.3f}" + (f" [{self.val_auroc_ci[0]:.3f}, {self.val_auroc_ci[1]:.3f}]"
                                                         if self.val_auroc_ci else " (no interval)"))
        verdict = "passes" if self.passed else "fails"
        return (f"model {self.model!r} {verdict} the quality gate: {measured}; the lower 95% bound must reach "
                f"{self.floor:.2f} ({self.floor_source})")

    def require(self, fix: str) -> None:
        """Raise a one-line `ModelError` naming the numbers and `fix` when the gate is not passed."""
        if not self.passed:
            raise ModelError(f"{self.sentence}; {fix}")


def quality_verdict(card: ModelCard, declared: float | None = None, declared_by: str = "") -> QualityVerdict:
    """Judge a model card against the declared floor (a design's), else its dataset's, else the default."""
    floor, source = _floor(card, declared, declared_by)
    val = card.split_metrics("val")
    auroc = val.get("auroc")
    interval = val.get("auroc_ci")
    ci = (float(interval[0]), float(interval[1])) if interval and None not in interval else None
    lower = ci[0] if ci else None
    passed = lower is not None and lower >= floor
    return QualityVerdict(model=card.name, passed=passed, floor=floor, floor_source=source,
                          val_auroc=None if auroc is None else float(auroc), val_auroc_ci=ci)


def _floor(card: ModelCard, declared: float | None, declared_by: str) -> tuple[float, str]:
    if declared is not None:
        return float(declared), f"declared by {declared_by or 'the design'}"
    dataset_card = _dataset_card(card.dataset.name)
    if dataset_card.get("min_val_auroc") is not None:
        return float(dataset_card["min_val_auroc"]), f"declared by the card of dataset {card.dataset.name!r}"
    if (dataset_card.get("source") or {}).get("kind") == "synthetic":
        # synthetic cards written before the card declared its floor
        return SYNTHETIC_MIN_VAL_AUROC, "the synthetic data's floor"
    return DEFAULT_MIN_VAL_AUROC, "the default for data that declares none; set [data] min_val_auroc in the design"


def _dataset_card(name: str) -> dict[str, Any]:
    if not name:
        return {}
    try:
        return json.loads((dataset_dir(name) / "card.json").read_text())
    except (OSError, ValueError):
        return {}  # a missing or unreadable card: the default floor applies (loading the data reports the card)
