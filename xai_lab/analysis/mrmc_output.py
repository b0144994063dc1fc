"""`xai-lab mrmc` input and output: reading the table, the text summary, the files written with --out."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from xai_lab.analysis.mrmc import MRMCResult  # noqa: E402
from xai_lab.analysis.reader_study import ReaderStudy, ReaderStudyError  # noqa: E402
from xai_lab.analysis.results import json_safe  # noqa: E402
from xai_lab.analysis.study_mrmc import FPR_GRID, roc_curves  # noqa: E402
from xai_lab.private_files import private_staging, write_private_csv, write_private_text  # noqa: E402

GENERALISATION_WORDS = {"random": "readers and cases random", "fixed_readers": "readers fixed, cases random",
                        "fixed_cases": "readers random, cases fixed"}


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file (by its suffix), or a one-line error naming the problem."""
    if not path.is_file():
        raise ReaderStudyError(f"no table at {path}; give the path of a CSV or Parquet file")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        return pd.read_parquet(path) if parquet else pd.read_csv(path)
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
        ddf = "inf" if inference.ddf is None else f"{inference.ddf:.2f}"
        lines.append(f"\n{GENERALISATION_WORDS[name]}: F({inference.ndf}, {ddf}) = {inference.F:.3f}, "
                     f"p = {inference.p_value:.4f}")
        for estimate in inference.modalities:
            lines.append(f"  {estimate.name:>20}  {fom} {estimate.value:.4f}  95% CI [{estimate.ci_low:.4f}, "
                         f"{estimate.ci_high:.4f}]")
        for contrast in inference.contrasts:
            lines.append(f"  {contrast.a} - {contrast.b}: {contrast.estimate:+.4f}  95% CI [{contrast.ci_low:+.4f}, "
                         f"{contrast.ci_high:+.4f}]  p = {contrast.p_value:.4f}")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def write_mrmc_outputs(result: MRMCResult, study: ReaderStudy, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "mrmc.json", "readers": out / "reader_foms.csv", "contrasts": out / "contrasts.csv"}
    write_private_text(written["json"], json.dumps(json_safe(result.to_json()), indent=2) + "\n")
    write_private_csv(written["readers"], pd.DataFrame([{"modality": m, "reader": r, result.fom: v}
                                                        for m, by_reader in result.reader_foms().items()
                                                        for r, v in by_reader.items()]))
    write_private_csv(written["contrasts"], pd.DataFrame([{"generalisation": name, **vars(c)}
                                                          for name in ("random", "fixed_readers", "fixed_cases")
                                                          for c in getattr(result, name).contrasts]))
    if result.fom == "auc":
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
