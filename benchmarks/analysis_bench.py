"""Analysis time for a large study: 500 participants x 40 trials, the full `xai-lab analyze`.

    python benchmarks/analysis_bench.py [--participants 500] [--trials 40] [--repeats 3]

A between-participant export (verify, rely and control, peer records rated 3 per rater) is drawn
with planted effects (`xai_lab.study.planted`), written as CSV, then analysed exactly as
`xai-lab analyze EXPORT --out DIR` does: loading, participant-clustered bootstrap (1,000
resamples) of every metric per arm and per stratum, GEE models, the Bayesian mixed GLM,
the competence models for 3 items, the MRMC reader-study analyses (verify's two looks, crossed,
and the three arms' final readings, split-plot: 500 readers x 40 cases), the CSV tables,
summary.json and the HTML report with its plots. The MRMC stage is also timed on its own.
Reported: seconds per stage (median of the repeats) and the share of the 60 s budget
of the analysis issue, so another machine can compare ratios. Raw rows go to
benchmarks/results/analysis_bench.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=500)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from xai_lab.analysis import analyze_export, write_outputs
    from xai_lab.analysis.study_mrmc import study_mrmc
    from xai_lab.study.design_file import load_design
    from xai_lab.study.planted import PlantedEffects, simulate_export

    design = load_design(REPO / "studies" / "verify_vs_rely.toml")
    design = dataclasses.replace(design, cases=dataclasses.replace(design.cases, n=args.trials))
    per_arm = -(-args.participants // len(design.arms))  # rounded up: 500 asked, 167 per arm, 501 in all
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        export = Path(folder) / "export"
        simulate_export(design, PlantedEffects(), per_arm=per_arm, seed=0).write(export)
        for repeat in range(args.repeats):
            started = time.perf_counter()
            analysis = analyze_export(export, resamples=1000, seed=repeat)
            analysed = time.perf_counter()
            write_outputs(analysis, Path(folder) / f"out{repeat}")
            done = time.perf_counter()
            study_mrmc(analysis.tables.trials)
            mrmc_s = time.perf_counter() - done
            rows.append({"analyse_s": analysed - started, "write_s": done - analysed, "total_s": done - started,
                         "mrmc_s": mrmc_s})
            print(f"repeat {repeat}: analyse {rows[-1]['analyse_s']:.1f} s (of which MRMC {mrmc_s:.1f} s), report "
                  f"{rows[-1]['write_s']:.1f} s, total {rows[-1]['total_s']:.1f} s", flush=True)
    trials = per_arm * len(design.arms) * args.trials
    total = statistics.median(r["total_s"] for r in rows)
    print(f"{per_arm * len(design.arms)} participants x {args.trials} trials = {trials} trials: median "
          f"{total:.1f} s = {total / BUDGET_S:.2f} of the {BUDGET_S:.0f} s budget; MRMC alone median "
          f"{statistics.median(r['mrmc_s'] for r in rows):.2f} s")
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "analysis_bench.json").write_text(json.dumps({"participants": per_arm * len(design.arms),
                                                             "trials": trials, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
