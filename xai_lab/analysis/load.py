"""Reading an export folder (`xai-lab export`) into tables the analysis can trust.

Only the columns the analysis uses are required; a file that lacks some of them is set aside
with a message naming them, and the rest of the analysis still runs. Labels are compared as
text, so correctness is recomputed from `true_label`, `ai_label` and `final_label` rather than
taken from the export's boolean columns. Pilot participants (whose records seed peer rating)
are left out of every estimate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from xai_lab.errors import DataError

NEEDED: dict[str, tuple[str, ...]] = {
    "participants": ("participant_id", "arm", "stratum", "status", "pilot"),
    "trials": ("participant_id", "arm", "trial_index", "case_id", "true_label", "ai_label", "initial_label",
               "initial_confidence", "final_label", "final_confidence", "rt_final_ms", "overlay_shown",
               "overlay_toggles"),
    "ratings": ("rater_id", "target_id", "target_arm", "item", "score", "scale_min", "scale_max"),
}


@dataclass
class ExportTables:
    trials: pd.DataFrame | None = None
    ratings: pd.DataFrame | None = None
    participants: pd.DataFrame | None = None
    flow: dict | None = None
    problems: list[str] = field(default_factory=list)  # what could not be used, as sentences


def load_export(directory: Path) -> ExportTables:
    if not directory.is_dir():
        raise DataError(f"export folder {directory} does not exist; write one with "
                        "`xai-lab export --study ID --out DIR`, or pass --study ID to analyze the database")
    tables = ExportTables()
    missing_files = []
    for name, columns in NEEDED.items():
        frame = _read(directory, name)
        if frame is None:
            missing_files.append(f"{name}.csv")
            continue
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            tables.problems.append(f"{name} file lacks column(s) {', '.join(absent)}: it was not used "
                                   "(re-export with `xai-lab export`)")
            continue
        setattr(tables, name, frame)
    if missing_files:
        tables.problems.append(f"missing file(s) in {directory}: {', '.join(missing_files)} "
                               "(CSV or Parquet, as `xai-lab export` writes them)")
    if (directory / "flow.json").is_file():
        tables.flow = json.loads((directory / "flow.json").read_text())
    if tables.trials is None and tables.ratings is None:
        raise DataError("nothing to analyse: " + "; ".join(tables.problems))
    _drop_pilots(tables)
    if tables.trials is not None:
        tables.trials = clean_trials(tables.trials)
    if tables.ratings is not None:
        tables.ratings = clean_ratings(tables.ratings, tables.problems)
    return tables


def _read(directory: Path, name: str) -> pd.DataFrame | None:
    csv, parquet = directory / f"{name}.csv", directory / f"{name}.parquet"
    try:
        if csv.is_file():
            return pd.read_csv(csv, dtype={"participant_id": str, "rater_id": str, "target_id": str,
                                           "case_id": str})
        if parquet.is_file():
            return pd.read_parquet(parquet)
    except (ValueError, OSError) as error:
        raise DataError(f"cannot read {csv if csv.is_file() else parquet}: {error}; re-export it") from None
    return None


def _drop_pilots(tables: ExportTables) -> None:
    if tables.participants is None:
        return
    pilot = tables.participants["pilot"].astype(str).str.lower().isin(["true", "1"])
    pilots = set(tables.participants.loc[pilot, "participant_id"])
    if not pilots:
        return
    if tables.trials is not None:
        tables.trials = tables.trials[~tables.trials["participant_id"].isin(pilots)]
    if tables.ratings is not None:
        tables.ratings = tables.ratings[~tables.ratings["rater_id"].isin(pilots)]
    tables.problems.append(f"{len(pilots)} pilot participant(s) left out of every estimate")


def _text(series: pd.Series) -> pd.Series:
    """Labels as text, with missing cells as None (CSV reads them as NaN)."""
    return series.astype("string").str.strip().replace("", pd.NA)


def clean_trials(trials: pd.DataFrame) -> pd.DataFrame:
    frame = trials.copy()
    for column in ("participant_id", "arm", "case_id", "true_label", "ai_label", "initial_label", "final_label"):
        frame[column] = _text(frame[column])
    for column in ("initial_confidence", "final_confidence", "rt_final_ms", "overlay_toggles"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["overlay_shown"] = frame["overlay_shown"].astype("string").str.lower().isin(["true", "1"])
    frame = frame[frame["final_label"].notna()].reset_index(drop=True)
    # the label comparisons every part of the analysis uses, made once; NA = not applicable (no AI)
    has_ai = frame["ai_label"].notna()
    frame["final_right"] = (frame["final_label"] == frame["true_label"]).astype(bool)
    frame["ai_right"] = (frame["ai_label"] == frame["true_label"]).astype("boolean").where(has_ai)
    frame["agrees"] = (frame["final_label"] == frame["ai_label"]).astype("boolean").where(has_ai)
    return frame


def clean_ratings(ratings: pd.DataFrame, problems: list[str]) -> pd.DataFrame:
    frame = ratings.copy()
    for column in ("rater_id", "target_id", "target_arm", "item"):
        frame[column] = _text(frame[column])
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    bad = frame["score"].isna()
    if bad.any():
        problems.append(f"{int(bad.sum())} rating(s) without a numeric score were left out")
    return frame[~bad].reset_index(drop=True)
