"""What an analysis found: the `Analysis` record and its JSON and table forms.

Between `analyze` (which fills an `Analysis`) and `report` / `outputs` (which write it), so
neither of those imports the other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import pandas as pd

from xai_lab.analysis.competence import ItemResult
from xai_lab.analysis.deviations import PreregistrationCheck
from xai_lab.analysis.estimands import Estimands
from xai_lab.analysis.load import MISSING_MEANS, ExportTables
from xai_lab.analysis.reliance import ECE_BINS, METRICS, Estimate
from xai_lab.analysis.study_mrmc import StudyMRMC
from xai_lab.analysis.trial_models import TrialModels


@dataclass
class Analysis:
    tables: ExportTables
    by_arm: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    by_stratum: dict[str, dict[str, dict[str, Estimate]]] = field(default_factory=dict)
    n_participants: dict[str, int] = field(default_factory=dict)
    quadrant: pd.DataFrame | None = None
    calibration: pd.DataFrame | None = None
    trial_models: TrialModels | None = None
    competence: list[ItemResult] = field(default_factory=list)
    primary_item: str | None = None
    mrmc: StudyMRMC | None = None
    estimands: Estimands | None = None
    settings: dict = field(default_factory=dict)  # resamples, seed, models run: for the methods paragraph
    notes: list[str] = field(default_factory=list)
    preregistration: PreregistrationCheck | None = None

    @property
    def headline_warnings(self) -> list[str]:
        """What a reader must know before any number: a rehearsal, or files the export lacked."""
        tables, lines = self.tables, []
        if tables.rehearsal:
            kept = " and ".join(f"{n} {kind}" for kind, n in tables.included.items()) or "no"
            lines.append(f"Rehearsal: simulated and pilot participants are included ({kept} participant(s)); these "
                         "numbers rehearse the analysis and are not a result of the study.")
        lines += [f"The export has no {name} file: {MISSING_MEANS[name]}." for name in tables.missing]
        return lines


def summary(analysis: Analysis) -> dict:
    """The JSON contract; `json_safe` turns every NaN into null on the way out."""
    result = {
        "n_participants": analysis.n_participants,
        "by_arm": {arm: {name: m[name].value for name in METRICS} for arm, m in analysis.by_arm.items()},
        "by_arm_ci": {arm: {name: [m[name].ci_low, m[name].ci_high] for name in METRICS}
                      for arm, m in analysis.by_arm.items()},
        "by_stratum": {s: {arm: {name: m[name].value for name in METRICS} for arm, m in arms.items()}
                       for s, arms in analysis.by_stratum.items()},
        "ece_bins": f"{ECE_BINS} equal-width bins of final confidence / 100 on [0, 1]",
        "competence": None,
        "competence_items": [item.to_json() for item in analysis.competence],
        "trial_models": analysis.trial_models.notes if analysis.trial_models else [],
        "trial_contrasts": (analysis.trial_models.contrasts.to_dict(orient="records")
                            if analysis.trial_models else []),
        "flow": analysis.tables.flow,
        "estimands": analysis.estimands.to_json() if analysis.estimands else None,
        "mrmc": analysis.mrmc.to_json() if analysis.mrmc else None,
        "notes": analysis.notes,
        "warnings": analysis.headline_warnings,
        "left_out": analysis.tables.left_out,
        "rehearsal": analysis.tables.rehearsal,
        "missing_files": analysis.tables.missing,
        "preregistration": asdict(analysis.preregistration) if analysis.preregistration else None,
    }
    primary = next((item for item in analysis.competence if item.item == analysis.primary_item), None)
    if primary is not None:
        result["competence"] = primary.to_json()
    return json_safe(result)


def json_safe(value):
    """NaN and infinities become null: a metric that cannot be computed is null, never a number."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) or hasattr(value, "item"):
        number = float(value)
        if not math.isfinite(number):
            return None
        return int(number) if isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu") \
            else number
    return value


def metrics_table(by_group: dict[str, dict[str, Estimate]], group: str = "arm") -> pd.DataFrame:
    rows = [{group: key, "metric": name, "estimate": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high,
             "n_trials": e.n} for key, metrics in by_group.items() for name, e in metrics.items()]
    return pd.DataFrame(rows, columns=[group, "metric", "estimate", "ci_low", "ci_high", "n_trials"])


def mrmc_tables(mrmc: StudyMRMC | None) -> dict[str, pd.DataFrame]:
    """Per-reader AUCs and every contrast of the two MRMC analyses, with the generalisation named."""
    if mrmc is None:
        return {}
    readers, contrasts = [], []
    for comparison, result in (("sequential", mrmc.sequential), ("between_arms", mrmc.between_arms)):
        if result is None:
            continue
        readers += [{"comparison": comparison, "condition": condition, "reader": reader, "auc": auc}
                    for condition, by_reader in result.reader_foms().items() for reader, auc in by_reader.items()]
        for generalisation in ("random", "fixed_readers", "fixed_cases"):
            contrasts += [{"comparison": comparison, "generalisation": generalisation, **vars(c)}
                          for c in getattr(result, generalisation).contrasts]
    return {"mrmc_reader_auc": pd.DataFrame(readers), "mrmc_contrasts": pd.DataFrame(contrasts)} if readers else {}
