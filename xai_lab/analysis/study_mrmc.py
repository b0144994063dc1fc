"""The MRMC analyses of a verify-vs-rely study export, with the ROC curves the report draws.

- **Sequential read** (crossed): in the verify arm every participant reads each case twice, first
  alone and then with the AI; initial vs final AUC is the classic second-read comparison.
- **Between arms** (split-plot, readers nested in arms): the final reading's AUC in each arm
  (rely, verify after the AI, control), each participant reading every case under one arm.

- **Between conditions** (factorial designs, split-plot): the final reading's AUC in each cell of the
  factors that vary between participants, when they are more than the workflow. Factors that vary within
  participants rotate the cases, so no reader reads every case under each of their levels: no ROC
  comparison of within levels (docs/analysis.md).

- **AI alone vs readers**: the AI's own probability for each case (its `ai_confidence`, turned to
  P(score_class)) read as a standalone reader against each condition's readers
  (`ai_vs_readers`: readers and cases random), the comparison every AI reader study is asked for.

Readings are the export's `initial_score` / `final_score` (probability 0-100 of `score_class`).
Participants who did not read every case are left out (their count is a note): the OR analysis
needs each reader's complete case set. Crossover (within) designs, where a participant reads
some cases under each arm, fit neither layout and get a note instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from xai_lab.analysis.ai_vs_readers import AiVsReaders, ai_vs_readers
from xai_lab.analysis.comparison import ordered_arms
from xai_lab.analysis.mrmc import MRMCResult, or_analysis
from xai_lab.analysis.reader_study import ReaderStudyError, reader_study

SCORE_COLUMNS = ("initial_score", "final_score", "score_class")
FIRST_LOOK = "verify, first look (alone)"
FPR_GRID = np.linspace(0, 1, 101)


@dataclass
class StudyMRMC:
    sequential: MRMCResult | None = None
    between_arms: MRMCResult | None = None
    between_conditions: MRMCResult | None = None
    long_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # name -> reader/case/truth/score/modality
    ai_vs_readers: list[AiVsReaders] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"sequential": self.sequential.to_json() if self.sequential else None,
                "between_arms": self.between_arms.to_json() if self.between_arms else None,
                "between_conditions": self.between_conditions.to_json() if self.between_conditions else None,
                "ai_vs_readers": [c.to_json() for c in self.ai_vs_readers], "notes": self.notes}


def study_mrmc(trials: pd.DataFrame, alpha: float = 0.05) -> StudyMRMC:
    result = StudyMRMC()
    missing = [c for c in SCORE_COLUMNS if c not in trials.columns]
    if missing:
        result.notes.append(f"MRMC: the trials lack {', '.join(missing)} (exports before scores were recorded); "
                            "re-export with this xai-lab to get the reader-study ROC analysis")
        return result
    truth = trials["true_label"] == trials["score_class"]
    verify = trials[trials["arm"] == "verify"]
    sequential = pd.concat([_long(verify, "initial_score", FIRST_LOOK, truth),
                            _long(verify, "final_score", "verify, second look (with AI)", truth)])
    result.sequential = _analyse("sequential", sequential, result, alpha, every_condition=True)
    final = pd.concat([_long(trials[trials["arm"] == arm], "final_score", arm, truth)
                       for arm in ordered_arms(trials["arm"])])
    result.between_arms = _analyse("between arms", final, result, alpha, every_condition=False)
    cells = _between_cells(trials)
    if cells is not None:
        by_cell = pd.concat([_long(trials[cells == cell], "final_score", cell, truth)
                             for cell in sorted(cells.unique())])
        result.between_conditions = _analyse("between conditions", by_cell, result, alpha, every_condition=False)
    _ai_alone(trials, result, alpha)
    return result


def _between_cells(trials: pd.DataFrame) -> pd.Series | None:
    """Each trial's between cell ('workflow=rely, confidence=verbal'): the factor columns that are constant
    within every participant; None unless they split participants more finely than the arms do."""
    columns = [c for c in trials.columns if c.startswith("factor_") and trials[c].notna().all()
               and (trials.groupby("participant_id")[c].nunique() == 1).all()]
    if not columns:
        return None
    cells = None
    for column in columns:  # joined column by column: a row-wise join is slow on 20,000 trials
        part = column.removeprefix("factor_") + "=" + trials[column].astype(str)
        cells = part if cells is None else cells + ", " + part
    if cells.nunique() <= trials["arm"].nunique():
        return None  # the arms (workflow) are the between cells: the between-arms analysis is this one
    return cells


def _ai_alone(trials: pd.DataFrame, result: StudyMRMC, alpha: float) -> None:
    """The AI as a standalone reader against the unaided first look (verify) and each arm's final reading."""
    ai = _ai_probability(trials)
    if ai is None:
        result.notes.append("AI alone vs readers: the AI's probability is not the same for every showing of a case "
                            "(several models or advice sources), so it is not one standalone reader; not analysed")
        return
    # verify's second look is the verify arm's final reading, which the between-arms table already holds
    sequential, between = result.long_tables.get("sequential"), result.long_tables.get("between arms")
    tables = ([] if sequential is None else [sequential[sequential["modality"] == FIRST_LOOK]]) + \
        ([] if between is None else [between])
    if not tables or ai.empty:
        return
    readings = pd.concat(tables)
    readings = readings[readings["case"].isin(ai.index)]
    for modality, rows in readings.groupby("modality", sort=False):
        try:
            study = reader_study(rows, reader="reader", case="case", truth="truth", score="score",
                                 modality="modality", min_modalities=1)
            result.ai_vs_readers += ai_vs_readers(study, ai.reindex(list(study.cases)).to_numpy(float), "auc", alpha)
        except ReaderStudyError as error:
            result.notes.append(f"AI alone vs readers ({modality}): not analysed ({error})")


def _ai_probability(trials: pd.DataFrame) -> pd.Series | None:
    """Per case, the AI's probability (0-100) of `score_class`; None if a case got different values."""
    shown = trials[trials["ai_label"].notna() & trials["ai_confidence"].notna()]
    confidence = pd.to_numeric(shown["ai_confidence"]) * 100
    probability = confidence.where(shown["ai_label"] == shown["score_class"], 100 - confidence).round(6)
    per_case = pd.DataFrame({"case": shown["case_id"].astype(str), "p": probability}).groupby("case")["p"]
    if (per_case.nunique() > 1).any():
        return None
    return per_case.first()


def _long(rows: pd.DataFrame, column: str, modality: str, truth: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"reader": rows["participant_id"].astype(str), "case": rows["case_id"].astype(str),
                         "truth": truth[rows.index].astype(int), "score": pd.to_numeric(rows[column]),
                         "modality": modality}).dropna(subset=["score"])


def _analyse(name: str, table: pd.DataFrame, result: StudyMRMC, alpha: float,
             every_condition: bool) -> MRMCResult | None:
    complete = _complete_readers(table, every_condition)
    dropped = table["reader"].nunique() - complete["reader"].nunique()
    if dropped:
        result.notes.append(f"MRMC {name}: {dropped} participant(s) who did not read every case in a condition were "
                            "left out (the analysis needs complete case sets)")
    if complete["modality"].nunique() < 2:
        result.notes.append(f"MRMC {name}: fewer than two conditions with complete readers; not analysed")
        return None
    try:
        study = reader_study(complete, reader="reader", case="case", truth="truth", score="score",
                             modality="modality")
        analysis = or_analysis(study, "auc", alpha)
    except ReaderStudyError as error:
        result.notes.append(f"MRMC {name}: not analysed ({error})")
        return None
    result.long_tables[name] = complete
    return analysis


def _complete_readers(table: pd.DataFrame, every_condition: bool) -> pd.DataFrame:
    """Keep readings of (reader, condition) pairs that cover every case of the study; with
    `every_condition` (a crossed comparison) only readers complete in all conditions."""
    cases = table["case"].nunique()
    counts = table.groupby(["reader", "modality"])["case"].nunique()
    complete = counts[counts == cases].reset_index()[["reader", "modality"]]
    if every_condition:
        conditions = table["modality"].nunique()
        full = complete.groupby("reader")["modality"].nunique()
        complete = complete[complete["reader"].isin(full[full == conditions].index)]
    return table.merge(complete, on=["reader", "modality"])


def roc_curves(table: pd.DataFrame) -> dict[str, tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]]:
    """Per condition: each reader's empirical ROC curve, and the reader-averaged curve (mean TPR at
    each false-positive rate: vertical averaging) on `FPR_GRID`."""
    curves = {}
    for modality, rows in table.groupby("modality", sort=False):
        readers, averaged = [], []
        for _, own in rows.groupby("reader"):
            fpr, tpr, _ = roc_curve(own["truth"], own["score"])
            readers.append((fpr, tpr))
            averaged.append(np.interp(FPR_GRID, fpr, tpr))
        curves[str(modality)] = (readers, np.mean(averaged, axis=0))
    return curves
