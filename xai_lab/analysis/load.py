"""Reading an export folder (`xai-lab export`) into tables the analysis can trust.

The export's contract (`xai_lab.study.export.CONTRACT`, marked in its codebook) names the columns
the analysis requires; every other column is optional, and what needs an absent one is null with
a note. A trials file that cannot be used is an error (exit 2 on the command line): the analysis
never writes a report that silently lacks the trials. Integrity problems - repeated
(participant, trial) rows, probabilities outside [0, 1], confidences outside 0-100, unknown arms
- are repaired conservatively (the repeat dropped, the value set missing, the row left out) and
each is reported as a note. Labels are compared as text, so correctness is recomputed from
`true_label`, `ai_label` and `final_label`.

Who is analysed: simulated participants (`enrolled_via = simulation`) and pilots are left out of
every estimate, and the count is said; `rehearsal=True` keeps them, for a dry run of the analysis
on a pilot, and the report then says on its first line that it is a rehearsal. A missing
participants file (pilots, simulations and completers cannot be told apart) or ratings file (the
design asked for peer ratings) stops the analysis unless `allow_partial=True`; then the missing
files are named at the top of the report and the claims that need them are not made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from xai_lab.errors import DataError
from xai_lab.study.design import ARMS
from xai_lab.study.export import CONTRACT, table_file

TABLES = ("participants", "trials", "ratings")


@dataclass
class ExportTables:
    trials: pd.DataFrame | None = None
    ratings: pd.DataFrame | None = None
    participants: pd.DataFrame | None = None
    flow: dict | None = None
    design: dict | None = None  # design.json: the registered design, with the declared [analysis]
    history: dict | None = None  # design_history.json: first enrolment and the amendments since
    problems: list[str] = field(default_factory=list)  # what was repaired or could not be used, as sentences
    missing: list[str] = field(default_factory=list)  # export files that were absent (allow_partial)
    left_out: dict[str, int] = field(default_factory=dict)  # "simulated" / "pilot" participants not analysed
    rehearsal: bool = False  # simulated and pilot participants were kept on purpose
    included: dict[str, int] = field(default_factory=dict)  # with rehearsal: simulated / pilot participants kept

    @property
    def arms(self) -> tuple[str, ...]:
        return tuple((self.design or {}).get("arms") or ARMS)

    @property
    def within(self) -> bool:
        return ((self.design or {}).get("allocation") or {}).get("kind") == "within"


def load_export(directory: Path, rehearsal: bool = False, allow_partial: bool = False) -> ExportTables:
    if not directory.is_dir():
        raise DataError(f"export folder {directory} does not exist; write one with "
                        "`xai-lab export --study ID --out DIR`, or pass --study ID to analyze the database")
    tables = ExportTables(flow=_json(directory, "flow"), design=_json(directory, "design"),
                          history=_json(directory, "design_history"), rehearsal=rehearsal)
    missing_files = []
    for name in TABLES:
        frame = _read(directory, name)
        if frame is None:
            missing_files.append(f"{name}.csv")
            if _needed(name, tables.design):
                tables.missing.append(name)
            continue
        absent = [c for c in CONTRACT[name] if c not in frame.columns]
        if absent and name == "trials":
            raise DataError(f"the trials file in {directory} lacks the contract column(s) {', '.join(absent)}; "
                            "re-export with `xai-lab export` (the codebook lists the required columns)")
        if absent:
            tables.problems.append(f"{name} file lacks column(s) {', '.join(absent)}: it was not used "
                                   "(re-export with `xai-lab export`)")
            continue
        setattr(tables, name, frame)
    if missing_files:
        tables.problems.append(f"missing file(s) in {directory}: {', '.join(missing_files)} "
                               "(CSV or Parquet, as `xai-lab export` writes them)")
    if tables.trials is None and ((tables.design or {}).get("cases") or {}).get("n", 0) > 0:
        raise DataError(f"the design has {tables.design['cases']['n']} trials per participant but {directory} has "
                        "no trials file; export the study again with `xai-lab export`")
    if tables.trials is None and tables.ratings is None:
        raise DataError("nothing to analyse: " + "; ".join(tables.problems))
    if tables.missing and not allow_partial:
        raise DataError(f"{directory} has no {' or '.join(f'{name}.csv' for name in tables.missing)}: "
                        + "; ".join(MISSING_MEANS[name] for name in tables.missing)
                        + "; export the study again with `xai-lab export`, or pass --allow-partial to analyse "
                          "what is there")
    _set_population(tables)
    if tables.trials is not None:
        tables.problems += optional_notes(tables.trials)
        tables.trials = clean_trials(check_trials(tables.trials, tables.arms, tables.problems))
    if tables.ratings is not None:
        tables.ratings = _design_arms_only(clean_ratings(tables.ratings, tables.problems), tables)
    return tables


def _design_arms_only(ratings: pd.DataFrame, tables: ExportTables) -> pd.DataFrame:
    """Fallback vignettes stand in for peers' records, which exist only for the design's arms; ratings of
    fallback vignettes of other arms (shown before the fallback kept to the design's arms) are set aside."""
    if tables.design is None or "target_source" not in ratings.columns:
        return ratings
    off = (ratings["target_source"].astype(str) == "fallback_vignette") & ~ratings["target_arm"].isin(tables.arms)
    if off.any():
        arms = ", ".join(sorted(ratings.loc[off, "target_arm"].astype(str).unique()))
        tables.problems.append(f"{int(off.sum())} rating(s) of fallback vignettes for arm(s) the design does not have "
                               f"({arms}) were left out: a fallback stands in for peers' records of the design's arms")
    return ratings[~off].reset_index(drop=True)


def _json(directory: Path, name: str) -> dict | None:
    path = directory / f"{name}.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({str(error).splitlines()[0]}); re-export the study, or delete "
                        "the file to analyse without it") from None
    if not isinstance(value, dict):
        raise DataError(f"{path} holds a {type(value).__name__}, not an object; re-export the study")
    return value


def _read(directory: Path, name: str) -> pd.DataFrame | None:
    path = table_file(directory, name)  # the Psych-DS layout, or the flat one of earlier exports
    try:
        if path is not None and path.suffix == ".csv":
            return pd.read_csv(path, dtype={"participant_id": str, "rater_id": str, "target_id": str,
                                            "case_id": str})
        if path is not None:
            return pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {str(error).splitlines()[0]}; re-export it") from None
    return None


# What an analysis cannot know without each file; said when the file is missing.
MISSING_MEANS = {
    "participants": "without it pilots, simulated participants and non-completers cannot be told from the rest, "
                    "so none is left out and no completers or attention-check sensitivity analysis can run",
    "ratings": "the design asked for peer ratings, so without it peer-rated competence cannot be analysed",
    "trials": "without it there are no accuracy or reliance metrics",
}


def _needed(name: str, design: dict | None) -> bool:
    """Whether an absent file is a gap (the design asks for what it holds) rather than a design without it."""
    if design is None or name == "participants":
        return True
    if name == "trials":  # a vignette-only design has no trials to miss
        return ((design.get("cases") or {}).get("n") or 0) > 0
    return ((design.get("peer_rating") or {}).get("kind") or "none") != "none"


def _set_population(tables: ExportTables) -> None:
    """Leave out simulated and pilot participants (and say how many), unless this is a rehearsal."""
    people = tables.participants
    if people is None:
        return
    simulated = people["enrolled_via"].astype(str) == "simulation" if "enrolled_via" in people.columns else \
        pd.Series(False, index=people.index)
    pilot = people["pilot"].astype(str).str.lower().isin(["true", "1"]) if "pilot" in people.columns else \
        pd.Series(False, index=people.index)
    counts = {"simulated": int(simulated.sum()), "pilot": int((pilot & ~simulated).sum())}
    if tables.rehearsal:
        tables.included = {kind: n for kind, n in counts.items() if n}
        return
    gone = set(people.loc[simulated | pilot, "participant_id"])
    if not gone:
        return
    tables.left_out = {kind: n for kind, n in counts.items() if n}
    if len(gone) == len(people):
        raise DataError(f"every participant in the export is simulated or a pilot ({_who(tables.left_out)}); "
                        "pass --rehearsal to analyse them as a rehearsal of the analysis")
    tables.participants = people[~people["participant_id"].isin(gone)]
    if tables.trials is not None:
        tables.trials = tables.trials[~tables.trials["participant_id"].isin(gone)]
    if tables.ratings is not None:
        tables.ratings = tables.ratings[~tables.ratings["rater_id"].isin(gone)]
    tables.problems.append(f"{_who(tables.left_out)} participant(s) left out of every estimate (pass --rehearsal "
                           "to include them in a rehearsal analysis)")


def _who(counts: dict[str, int]) -> str:
    return " and ".join(f"{n} {kind}" for kind, n in counts.items())


def check_trials(trials: pd.DataFrame, arms: tuple[str, ...], problems: list[str]) -> pd.DataFrame:
    """Integrity checks that repair conservatively and say what they did."""
    frame = trials.copy()
    twice = frame.duplicated(["participant_id", "trial_index"], keep="first")
    if twice.any():
        problems.append(f"{int(twice.sum())} repeated (participant, trial_index) row(s) were dropped, keeping the "
                        "first of each")
        frame = frame[~twice]
    unknown = ~frame["arm"].astype(str).isin(arms)
    if unknown.any():
        names = ", ".join(sorted(frame.loc[unknown, "arm"].astype(str).unique())[:3])
        problems.append(f"{int(unknown.sum())} trial(s) with unknown arm(s) {names} were left out (arms: "
                        f"{', '.join(arms)})")
        frame = frame[~unknown]
    for column, low, high in (("initial_confidence", 0, 100), ("final_confidence", 0, 100),
                              ("ai_confidence", 0, 1), ("initial_score", 0, 100), ("final_score", 0, 100)):
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        outside = values.notna() & ((values < low) | (values > high))
        if outside.any():
            problems.append(f"{int(outside.sum())} {column} value(s) outside {low}-{high} were set missing")
            frame[column] = values.where(~outside)
    return frame


def _text(series: pd.Series) -> pd.Series:
    """Labels as text, with missing cells as None (CSV reads them as NaN)."""
    return series.astype("string").str.strip().replace("", pd.NA)


# Optional trial columns: the value an absent column means, and what is then null (None: nothing,
# overlay_shown then follows whether the AI was shown).
OPTIONAL_TRIAL_COLUMNS: dict[str, tuple[float | None, str | None]] = {
    "rt_final_ms": (float("nan"), "median decision time"),
    "overlay_toggles": (float("nan"), "overlay toggles per trial"),
    "overlay_shown": (None, None),
}


def clean_trials(trials: pd.DataFrame) -> pd.DataFrame:
    frame = trials.copy()
    for column, (default, _) in OPTIONAL_TRIAL_COLUMNS.items():  # absent means not recorded
        if column not in frame.columns:
            frame[column] = default
    for column in ("participant_id", "arm", "case_id", "true_label", "ai_label", "initial_label", "final_label"):
        frame[column] = _text(frame[column])
    for column in ("initial_confidence", "final_confidence", "rt_final_ms", "overlay_toggles"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    shown = frame["overlay_shown"].astype("string").str.lower()
    frame["overlay_shown"] = shown.isin(["true", "1"]) | (shown.isna() & frame["ai_label"].notna())
    frame = frame[frame["final_label"].notna()].reset_index(drop=True)
    # the label comparisons every part of the analysis uses, made once; NA = not applicable (no AI)
    has_ai = frame["ai_label"].notna()
    frame["final_right"] = (frame["final_label"] == frame["true_label"]).astype(bool)
    frame["ai_right"] = (frame["ai_label"] == frame["true_label"]).astype("boolean").where(has_ai)
    frame["agrees"] = (frame["final_label"] == frame["ai_label"]).astype("boolean").where(has_ai)
    return frame


def optional_notes(trials: pd.DataFrame) -> list[str]:
    """What the absence of optional trial columns leaves null."""
    return [f"the trials have no {column} column: {what} is null"
            for column, (_, what) in OPTIONAL_TRIAL_COLUMNS.items() if what and column not in trials.columns]


def clean_ratings(ratings: pd.DataFrame, problems: list[str]) -> pd.DataFrame:
    frame = ratings.copy()
    for column in ("rater_id", "target_id", "target_arm", "item"):
        frame[column] = _text(frame[column])
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    bad = frame["score"].isna()
    if bad.any():
        problems.append(f"{int(bad.sum())} rating(s) without a numeric score were left out")
    return frame[~bad].reset_index(drop=True)
