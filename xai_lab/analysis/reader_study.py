"""`ReaderStudy`: a long reader-study table checked and laid out as arrays for MRMC analysis.

    study = reader_study(frame, reader="reader", case="case", truth="truth", score="rating",
                         modality="treatment")
    study.scores        # (modalities, readers, cases), NaN where a reader did not read in a modality
    study.design        # "crossed" or "split-plot"

Two layouts are analysable, and everything else is refused with a sentence naming the cells
that are missing:
- **crossed** (fully crossed, "factorial"): every reader reads every case in every modality;
- **split-plot** (readers nested in modalities): each reader reads every case in exactly one
  modality, as in a between-arm study where each participant is allocated to one arm. Cases are
  crossed with readers and modalities (everyone reads the same cases).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from xai_lab.errors import XaiLabError

DESIGNS = ("crossed", "split-plot")
MAX_LISTED = 3  # cells named in an error before "..."


class ReaderStudyError(XaiLabError):
    """A reader-study table that cannot be analysed as it is; the message names the fix."""


@dataclass(frozen=True)
class ReaderStudy:
    modalities: tuple[str, ...]
    readers: tuple[str, ...]
    cases: tuple[str, ...]
    truth: np.ndarray  # (cases,) bool: True = abnormal (positive)
    scores: np.ndarray  # (modalities, readers, cases) float; higher = more suspicious; NaN = not read
    design: str

    @property
    def reads(self) -> np.ndarray:
        """(modalities, readers) bool: which reader read in which modality."""
        return ~np.isnan(self.scores[:, :, 0])

    @property
    def n_cases(self) -> int:
        return len(self.cases)

    def readers_in(self, modality: int) -> np.ndarray:
        return np.flatnonzero(self.reads[modality])


def reader_study(frame: pd.DataFrame, *, reader: str, case: str, truth: str, score: str, modality: str,
                 positive: str | None = None, higher_is_positive: bool = True, min_modalities: int = 2
                 ) -> ReaderStudy:
    """Check a long table (one row per reader x modality x case) and lay it out as arrays. One modality
    is enough (`min_modalities=1`) when the readers are compared with a standalone AI."""
    columns = {"--reader": reader, "--case": case, "--truth": truth, "--score": score, "--modality": modality}
    missing = [f"{option} {name!r}" for option, name in columns.items() if name not in frame.columns]
    if missing:
        raise ReaderStudyError(f"the table has no column {', '.join(missing)}; its columns are "
                               f"{', '.join(map(str, frame.columns))}: name the right ones")
    data = pd.DataFrame({key: frame[name] for key, name in
                         (("reader", reader), ("case", case), ("truth", truth), ("score", score),
                          ("modality", modality))})
    for key in ("reader", "case", "modality"):
        if data[key].isna().any():
            raise ReaderStudyError(f"{int(data[key].isna().sum())} rows have no {key} (column "
                                   f"{columns['--' + key]!r}); fill them in or drop those rows")
        data[key] = data[key].map(as_label)
    scores = pd.to_numeric(data["score"], errors="coerce")
    bad = data.loc[scores.isna() | ~np.isfinite(scores.fillna(0)), "score"]
    if len(bad):
        example = "an empty cell" if pd.isna(bad.iloc[0]) else repr(str(bad.iloc[0]))
        raise ReaderStudyError(f"{len(bad)} scores in column {score!r} are not numbers (e.g. {example}); "
                               "give every row a numeric score")
    # reversed by reflection, not negation: the ranking flips (AUC) and 0/1 calls stay 0/1 (sensitivity)
    data["score"] = scores if higher_is_positive else scores.min() + scores.max() - scores
    data["positive"] = _positive(data["truth"], truth, positive)
    _check_duplicates(data)
    return _layout(data, min_modalities)


def as_label(value) -> str:
    """Identifiers as strings; whole floats (1.0, from a CSV column with gaps) as whole numbers."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _truth_label(value) -> str:
    """A truth value as text; "1.0" and 1.0 (a CSV column with gaps) read as "1"."""
    text = as_label(value)
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _positive(values: pd.Series, column: str, positive: str | None) -> pd.Series:
    if values.isna().any():
        raise ReaderStudyError(f"{int(values.isna().sum())} rows have no truth (column {column!r}); every case "
                               "needs its true status")
    labels = values.map(_truth_label)
    found = sorted(set(labels))
    if len(found) == 1:
        raise ReaderStudyError(f"every case has the same truth ({found[0]!r} in column {column!r}); an ROC analysis "
                               "needs normal and abnormal cases: check that --truth names the true status")
    if positive is None:
        if set(found) <= {"0", "1"}:
            positive = "1"
        elif set(found) <= {"False", "True"}:
            positive = "True"
        else:
            raise ReaderStudyError(f"the truth column {column!r} holds {', '.join(found[:5])}; say which value "
                                   "means abnormal with --positive VALUE")
    if positive not in found:
        raise ReaderStudyError(f"--positive {positive!r} is not a value of the truth column {column!r} "
                               f"({', '.join(found[:5])})")
    return labels == positive


def _check_duplicates(data: pd.DataFrame) -> None:
    twice = data.duplicated(["reader", "modality", "case"], keep=False)
    if twice.any():
        row = data[twice].iloc[0]
        raise ReaderStudyError(f"{int(twice.sum())} rows repeat a reader x modality x case (e.g. reader "
                               f"{row['reader']}, modality {row['modality']}, case {row['case']}); keep one score "
                               "per reading")
    conflicting = data.groupby("case")["positive"].nunique()
    if (conflicting > 1).any():
        raise ReaderStudyError(f"case {conflicting[conflicting > 1].index[0]} has both truths in different rows; "
                               "a case's truth must be the same in every row")


def _layout(data: pd.DataFrame, min_modalities: int) -> ReaderStudy:
    modalities = tuple(sorted(data["modality"].unique(), key=_natural))
    readers = tuple(sorted(data["reader"].unique(), key=_natural))
    cases = tuple(sorted(data["case"].unique(), key=_natural))
    if len(modalities) < min_modalities:
        raise ReaderStudyError(f"the table has one modality ({modalities[0]!r}); MRMC analysis compares two or more "
                               "(to compare one modality's readers with a standalone AI, give its scores with --ai)")
    if len(readers) < 2:
        raise ReaderStudyError("the table has one reader; random-reader MRMC analysis needs at least two")
    truth = data.groupby("case")["positive"].first().reindex(list(cases)).to_numpy(bool)
    if truth.all() or not truth.any():
        raise ReaderStudyError("every case has the same truth; an ROC analysis needs normal and abnormal cases")
    grid = data.pivot_table(index=["modality", "reader"], columns="case", values="score", aggfunc="first")
    full = pd.MultiIndex.from_product([modalities, readers], names=["modality", "reader"])
    scores = grid.reindex(index=full, columns=list(cases)).to_numpy(float).reshape(len(modalities), len(readers),
                                                                                     len(cases))
    design = _design(scores, modalities, readers, cases)
    return ReaderStudy(modalities, readers, cases, truth, scores, design)


def _design(scores: np.ndarray, modalities, readers, cases) -> str:
    """Which layout the scores follow; a sentence naming missing cells when neither."""
    read_any = ~np.isnan(scores).all(axis=2)  # (modalities, readers): read at least one case
    gaps = [(m, r, int(np.isnan(scores[m, r]).sum())) for m in range(len(modalities)) for r in range(len(readers))
            if read_any[m, r] and np.isnan(scores[m, r]).any()]
    if gaps:
        listed = "; ".join(f"reader {readers[r]} in modality {modalities[m]} lacks {n} of {len(cases)} cases"
                           for m, r, n in gaps[:MAX_LISTED])
        raise ReaderStudyError(f"unbalanced cells: {listed}{' ...' if len(gaps) > MAX_LISTED else ''}; every "
                               "reader must score every case in each modality they read")
    if read_any.all():
        return "crossed"
    per_reader = read_any.sum(axis=0)
    if (per_reader == 1).all():
        too_few = [modalities[m] for m in range(len(modalities)) if read_any[m].sum() < 2]
        if too_few:
            raise ReaderStudyError(f"modality {too_few[0]} has fewer than two readers; each modality of a split-plot "
                                   "(readers nested in modalities) study needs at least two")
        return "split-plot"
    if (per_reader == 1).sum() > len(readers) / 2:  # meant as split-plot: name readers in several modalities
        problems = [f"reader {readers[r]} read in {per_reader[r]} modalities" for r in range(len(readers))
                    if per_reader[r] > 1]
    else:  # meant as crossed: name the modalities each reader lacks
        problems = [f"reader {readers[r]} has no scores in modality {modalities[m]}" for r in range(len(readers))
                    for m in range(len(modalities)) if not read_any[m, r]]
    more = " ..." if len(problems) > MAX_LISTED else ""
    raise ReaderStudyError(f"neither fully crossed nor split-plot: {'; '.join(problems[:MAX_LISTED])}{more}; each "
                           "reader must read every case in every modality (crossed) or in exactly one modality "
                           "(split-plot)")


def _natural(value: str):
    """'2' before '10'; text after numbers; ids equal as numbers ("1.1", "1.10") kept apart by their text."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)
