"""The report's reader-study (MRMC) section: per-reader and reader-averaged ROC curves, the OR
analysis of each comparison, and a sentence that says what the interval allows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xai_lab.analysis.mrmc import MRMCResult
from xai_lab.analysis.report_plots import roc_figure
from xai_lab.analysis.report_text import fmt, p_text, p_words, table
from xai_lab.analysis.study_mrmc import FPR_GRID, StudyMRMC, roc_curves

TITLES = {"sequential": "Verify: first look alone vs second look with the AI (sequential read, crossed)",
          "between arms": "Between arms: final reading (readers nested in arms, split-plot)",
          "between conditions": "Between conditions: final reading in each cell of the between-participant factors "
                                "(readers nested in cells, split-plot)"}


def mrmc_context(mrmc: StudyMRMC | None) -> list[dict]:
    """One entry per analysed comparison, as the template shows it (empty: no MRMC section)."""
    if mrmc is None:
        return []
    parts = []
    for name, result in (("sequential", mrmc.sequential), ("between arms", mrmc.between_arms),
                         ("between conditions", mrmc.between_conditions)):
        if result is None:
            continue
        conditions = pd.DataFrame([{"condition": e.name, "readers": int(np.sum(~np.isnan(result.theta[i]))),
                                    "AUC": fmt(e.value), "95% CI": f"[{fmt(e.ci_low)}, {fmt(e.ci_high)}]",
                                    "df": fmt(e.df, 1)} for i, e in enumerate(result.random.modalities)])
        contrasts = pd.DataFrame([{"a": c.a, "b": c.b, "difference": fmt(c.estimate),
                                   "95% CI": f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}]", "F": fmt(c.F, 2),
                                   "ndf": c.ndf, "ddf": fmt(c.ddf, 1), "p": p_text(c.p_value)}
                                  for c in result.random.contrasts])
        parts.append({"title": TITLES[name], "sentence": sentence(result),
                      "figure": roc_figure(roc_curves(mrmc.long_tables[name]), FPR_GRID),
                      "conditions": table(conditions), "contrasts": table(contrasts, left=2),
                      "test": f"{result.n_cases} cases ({result.n_abnormal} with the finding); global test "
                              f"F({result.random.ndf}, {fmt(result.random.ddf, 1)}) = {fmt(result.random.F, 2)}, "
                              f"p {p_words(result.random.p_value)}.",
                      "notes": list(result.notes)})
    return parts


def ai_context(mrmc: StudyMRMC | None) -> dict | None:
    """The AI-alone-vs-readers table, None when there is none."""
    if mrmc is None or not mrmc.ai_vs_readers:
        return None
    rows = pd.DataFrame([{"readers' condition": c.modality, "readers": c.n_readers, "AI AUC": fmt(c.ai_fom),
                          "readers' mean AUC": fmt(c.readers_mean), "readers - AI": fmt(c.random.difference),
                          "95% CI": f"[{fmt(c.random.ci_low)}, {fmt(c.random.ci_high)}]",
                          "df": fmt(c.random.df, 1), "p": p_text(c.random.p_value)} for c in mrmc.ai_vs_readers])
    return table(rows)


def sentence(result: MRMCResult) -> str:
    """Plain words for the first contrast (the two main conditions)."""
    contrast = result.random.contrasts[0]
    aucs = {e.name: e.value for e in result.random.modalities}
    if contrast.ci_low <= 0 <= contrast.ci_high:
        verdict = "the interval includes no difference, so these data cannot tell the two apart"
    else:
        better = contrast.a if contrast.estimate > 0 else contrast.b
        verdict = f"the interval excludes zero, so readers discriminated better in '{better}'"
    return (f"Averaged over {len(result.readers)} readers, the AUC was {fmt(aucs[contrast.a])} in '{contrast.a}' and "
            f"{fmt(aucs[contrast.b])} in '{contrast.b}': difference {fmt(contrast.estimate)} (95% CI "
            f"{fmt(contrast.ci_low)} to {fmt(contrast.ci_high)}; F(1, {fmt(contrast.ddf, 1)}) = {fmt(contrast.F, 2)}, "
            f"p {p_words(contrast.p_value)}; readers and cases random); {verdict}.")
