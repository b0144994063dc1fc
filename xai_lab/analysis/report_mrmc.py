"""The report's reader-study (MRMC) section: per-reader and reader-averaged ROC curves, the OR
analysis of each comparison, and a sentence that says what the interval allows."""

from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from xai_lab.analysis.mrmc import MRMCResult  # noqa: E402
from xai_lab.analysis.study_mrmc import FPR_GRID, StudyMRMC, roc_curves  # noqa: E402

CONDITION_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")
TITLES = {"sequential": "Verify: first look alone vs second look with the AI (sequential read, crossed)",
          "between arms": "Between arms: final reading (readers nested in arms, split-plot)"}


def mrmc_section(mrmc: StudyMRMC | None, png, table, fmt, p_words) -> str:
    """HTML for the section; `png`, `table`, `fmt`, `p_words` are the report's own helpers."""
    if mrmc is None or (mrmc.sequential is None and mrmc.between_arms is None):
        return ""
    parts = ["<h2>Reader-study ROC analysis (MRMC)</h2><p>Each participant's readings (probability 0-100 that the "
             "case shows the finding) give one empirical AUC per participant and condition. The Obuchowski-Rockette "
             "analysis with Hillis's degrees of freedom treats <b>participants and cases as random</b>, so its "
             "intervals generalise to other clinicians and other cases, unlike the per-trial metrics above. "
             "Fixed-reader and fixed-case results are in summary.json.</p>"]
    for name, result in (("sequential", mrmc.sequential), ("between arms", mrmc.between_arms)):
        if result is None:
            continue
        parts.append(f"<h3>{html.escape(TITLES[name])}</h3>")
        parts.append(f"<p>{html.escape(sentence(result, fmt, p_words))}</p>")
        parts.append(png(_roc_figure(mrmc.long_tables[name], result)))
        rows = pd.DataFrame([{"condition": e.name, "readers": int(np.sum(~np.isnan(result.theta[i]))),
                              "AUC": e.value, "95% CI": f"[{fmt(e.ci_low)}, {fmt(e.ci_high)}]",
                              "df": e.df} for i, e in enumerate(result.random.modalities)])
        parts.append(table(rows))
        contrasts = pd.DataFrame([{"a": c.a, "b": c.b, "difference": c.estimate,
                                   "95% CI": f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}]", "F": c.F, "ndf": c.ndf,
                                   "ddf": c.ddf, "p_value": c.p_value} for c in result.random.contrasts])
        parts.append(table(contrasts, left=2))
        parts.append(f"<p>{result.n_cases} cases ({result.n_abnormal} with the finding); global test F"
                     f"({result.random.ndf}, {fmt(result.random.ddf, 1)}) = {fmt(result.random.F, 2)}, p "
                     f"{p_words(result.random.p_value)}.</p>")
        parts += [f"<div class='note'>{html.escape(n)}</div>" for n in result.notes]
    return "".join(parts)


def sentence(result: MRMCResult, fmt, p_words) -> str:
    """Plain words for the first contrast (the two main conditions)."""
    contrast = result.random.contrasts[0]
    aucs = {e.name: e.value for e in result.random.modalities}
    if contrast.ci_low <= 0 <= contrast.ci_high:
        verdict = "the interval includes no difference, so these data cannot tell the two apart"
    else:
        better = contrast.a if contrast.estimate > 0 else contrast.b
        verdict = f"the interval excludes no difference: readers discriminated better in '{better}'"
    return (f"Averaged over {len(result.readers)} readers, the AUC was {fmt(aucs[contrast.a])} in '{contrast.a}' and "
            f"{fmt(aucs[contrast.b])} in '{contrast.b}': difference {fmt(contrast.estimate)} (95% CI "
            f"{fmt(contrast.ci_low)} to {fmt(contrast.ci_high)}; F(1, {fmt(contrast.ddf, 1)}) = {fmt(contrast.F, 2)}, "
            f"p {p_words(contrast.p_value)}; readers and cases random); {verdict}.")


def _roc_figure(table: pd.DataFrame, result: MRMCResult):
    curves = roc_curves(table)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for index, (condition, (readers, averaged)) in enumerate(curves.items()):
        colour = CONDITION_COLOURS[index % len(CONDITION_COLOURS)]
        # one collection per condition: hundreds of readers draw in one call
        axes[0].add_collection(LineCollection([np.column_stack(curve) for curve in readers], colors=colour,
                                              alpha=0.25, linewidths=0.8))
        axes[0].plot([], [], color=colour, label=f"{condition} ({len(readers)} readers)")
        axes[1].plot(FPR_GRID, averaged, color=colour, lw=2, label=condition)
    for ax, title in zip(axes, ("Each reader's ROC curve", "Reader-averaged ROC curve (vertical average)"),
                         strict=True):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_title(title, fontsize=10)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure
