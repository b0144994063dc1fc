"""`xai-lab mrmc` input and output: reading the table, the text summary, the files written with --out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from xai_lab.analysis.ai_vs_readers import AiVsReaders  # noqa: E402
from xai_lab.analysis.mrmc import MRMCResult  # noqa: E402
from xai_lab.analysis.reader_study import ReaderStudy, ReaderStudyError  # noqa: E402
from xai_lab.analysis.results import json_safe  # noqa: E402
from xai_lab.analysis.study_mrmc import FPR_GRID, roc_curves  # noqa: E402
from xai_lab.private_files import private_staging, write_private_csv, write_private_text  # noqa: E402

GENERALISATION_WORDS = {"random": "readers and cases random", "fixed_readers": "readers fixed, cases random",
                        "fixed_cases": "readers random, cases fixed"}


def read_table(path: Path, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV or Parquet file (by its suffix), or a one-line error naming the problem. `text_columns`
    (identifiers) are read from a CSV as written: "1.10" is not "1.1" and "007" keeps its zeros."""
    if not path.is_file():
        raise ReaderStudyError(f"no table at {path}; give the path of a CSV or Parquet file")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        return pd.read_parquet(path) if parquet else pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
    except (ValueError, OSError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ReaderStudyError(f"cannot read {path} as {'Parquet' if parquet else 'CSV'} ({reason}); give a CSV "
                               "with a header row, or a .parquet file") from None


def describe(result: MRMCResult) -> str:
    """The analysis as text: design, per-modality FOMs, the global test and every contrast per generalisation."""
    fom = result.fom.upper() if result.fom == "auc" else result.fom
    lines = [f"MRMC {result.design}: {len(result.readers)} readers, {result.n_cases} cases ({result.n_abnormal} "
             f"abnormal), {len(result.modalities)} modalities; {fom}, Obuchowski-Rockette with Hillis ddf"]
    for name in ("random", "fixed_readers", "fixed_cases"):
        inference = getattr(result, name)
        lines.append(f"\n{GENERALISATION_WORDS[name]}: {_global_test(inference)}")
        for estimate in inference.modalities:
            lines.append(f"  {estimate.name:>20}  {fom} {estimate.value:.4f}  95% CI [{estimate.ci_low:.4f}, "
                         f"{estimate.ci_high:.4f}]")
        for contrast in inference.contrasts:
            lines.append(f"  {contrast.a} - {contrast.b}: {contrast.estimate:+.4f}  {_interval(contrast)}  "
                         f"p = {_p(contrast.p_value)}")
        if name == "fixed_readers" and result.reader_contrasts:
            lines.append("  each reader on its own (cases random, z):")
            for contrast in result.reader_contrasts:
                lines.append(f"    reader {contrast.reader}: {contrast.a} - {contrast.b} {contrast.estimate:+.4f}  "
                             f"95% CI [{contrast.ci_low:+.4f}, {contrast.ci_high:+.4f}]  p = {_p(contrast.p_value)}")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def _global_test(inference) -> str:
    """F(ndf, ddf) = F, or the chi-square of the fixed-reader test (no denominator df), or why there is none."""
    if not math.isfinite(inference.F):
        return "no test (see the note below)"
    if inference.ddf is None:
        return f"chi-square({inference.ndf}) = {inference.F * inference.ndf:.3f}, p = {_p(inference.p_value)}"
    return f"F({inference.ndf}, {inference.ddf:.2f}) = {inference.F:.3f}, p = {_p(inference.p_value)}"


def _interval(contrast) -> str:
    if not (math.isfinite(contrast.ci_low) and math.isfinite(contrast.ci_high)):
        return "95% CI not defined"
    return f"95% CI [{contrast.ci_low:+.4f}, {contrast.ci_high:+.4f}]"


def _p(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "not defined"


def describe_ai(comparisons: list[AiVsReaders], fom: str) -> str:
    """Readers against a standalone AI, per modality, readers and cases random and cases fixed."""
    name = fom.upper() if fom == "auc" else fom
    lines = [f"AI vs readers ({name}; readers minus AI; RJafroc's StCadVsRad 1T-RRRC / 1T-RRFC method)"]
    for comparison in comparisons:
        lines.append(f"\n{comparison.modality}: AI {comparison.ai_fom:.4f}, mean of {comparison.n_readers} readers "
                     f"{comparison.readers_mean:.4f}")
        for label, test in (("readers and cases random", comparison.random),
                            ("readers random, cases fixed", comparison.fixed_cases)):
            lines.append(f"  {label}: {test.difference:+.4f}  95% CI [{test.ci_low:+.4f}, {test.ci_high:+.4f}]  "
                         f"t({test.df:.2f}) = {test.t:.3f}, p = {_p(test.p_value)}")
    return "\n".join(lines)


def write_mrmc_outputs(result: MRMCResult | None, study: ReaderStudy, out: Path,
                       versus_ai: list[AiVsReaders] | None = None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if result is not None:
        written = {"json": out / "mrmc.json", "readers": out / "reader_foms.csv", "contrasts": out / "contrasts.csv"}
        write_private_text(written["json"], json.dumps(json_safe(result.to_json()), indent=2) + "\n")
        write_private_csv(written["readers"], pd.DataFrame([{"modality": m, "reader": r, result.fom: v}
                                                            for m, by_reader in result.reader_foms().items()
                                                            for r, v in by_reader.items()]))
        write_private_csv(written["contrasts"], pd.DataFrame([{"generalisation": name, **vars(c)}
                                                              for name in ("random", "fixed_readers", "fixed_cases")
                                                              for c in getattr(result, name).contrasts]))
    if versus_ai is not None:
        written["ai"] = out / "ai_vs_readers.json"
        write_private_text(written["ai"], json.dumps(json_safe([c.to_json() for c in versus_ai]), indent=2) + "\n")
    if (result.fom if result is not None else None) == "auc":
        written["roc"] = out / "roc.png"
        _roc_plot(study, written["roc"])
    return written


def _roc_plot(study: ReaderStudy, path: Path) -> None:
    rows = [{"modality": study.modalities[m], "reader": study.readers[r], "truth": int(study.truth[k]),
             "score": study.scores[m, r, k]} for m, r in zip(*np.nonzero(study.reads), strict=True)
            for k in range(study.n_cases)]
    figure, ax = plt.subplots(figsize=(5, 5))
    for (modality, (readers, averaged)), colour in zip(roc_curves(pd.DataFrame(rows)).items(),
                                                         plt.rcParams["axes.prop_cycle"].by_key()["color"],
                                                         strict=False):
        for fpr, tpr in readers:
            ax.plot(fpr, tpr, color=colour, alpha=0.25, lw=0.8)
        ax.plot(FPR_GRID, averaged, color=colour, lw=2, label=f"{modality} (reader average)")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    staging = private_staging(path)  # aggregated participants' readings: 0600 like the tables
    figure.savefig(staging, dpi=120, format="png")
    staging.replace(path)
    plt.close(figure)
