"""Cost of the design-specific tests, as ratios to the between-arm crossed test on the same machine.

    python benchmarks/statistics_bench.py [--repeats 30]

What a power simulation or a report pays per study:
- the crossed participants x cases risk difference (between designs; the reference, 1.0);
- the crossover analysis with participants and cases random (within designs; it replaced a
  2,000-resample participant bootstrap);
- the OR analysis of a split-plot reader study with arms of 3 and 8 readers (the generalised
  Behrens-Fisher test, by quadrature) and of 6 and 8 (Satterthwaite);
- AI vs readers and pilot-based power (HOB 2011) on the reference data in tests/data;
- a factorial design's within-factor contrast and interaction (studies/explanation_2x2.toml, 20 per
  between cell, participants and cases random).

Reported: median milliseconds per call and the ratio to the crossed test. Raw rows go to
benchmarks/results/statistics_bench.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from timing import median_seconds

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    import numpy as np
    import pandas as pd

    from xai_lab.analysis.ai_vs_readers import ai_vs_readers
    from xai_lab.analysis.crossover import crossover_analysis
    from xai_lab.analysis.factorial import factor_contrast, factors_of, interaction
    from xai_lab.analysis.load import clean_trials
    from xai_lab.analysis.mrmc import or_analysis
    from xai_lab.analysis.pilot_power import PilotEstimates, pilot_power
    from xai_lab.analysis.reader_study import reader_study
    from xai_lab.analysis.reliance import trial_indicators
    from xai_lab.analysis.results import json_safe
    from xai_lab.analysis.risk_difference import crossed_risk_difference
    from xai_lab.analysis.roe_metz import VARIANCE_STRUCTURES, simulate_reader_study
    from xai_lab.study.design_file import load_design
    from xai_lab.study.planted import PlantedEffects, simulate_export

    design = load_design(REPO / "studies" / "verify_vs_rely.toml")
    two_arms = dataclasses.replace(design, arms=("verify", "rely"),
                                   peer_rating=dataclasses.replace(design.peer_rating, kind="none"))
    within = dataclasses.replace(two_arms, allocation=dataclasses.replace(two_arms.allocation, kind="within",
                                                                          block_sizes=(2, 4)))
    between_export = simulate_export(two_arms, PlantedEffects(case_arm_sd=1.0), per_arm=20, seed=1)
    between = trial_indicators(clean_trials(between_export.trials))
    within_export = simulate_export(within, PlantedEffects(case_arm_sd=1.0), per_arm=15, seed=1)
    within_indicators = trial_indicators(clean_trials(within_export.trials))
    sequence = within_export.participants.set_index("participant_id")["arm"]
    two_by_two = load_design(REPO / "studies" / "explanation_2x2.toml")
    factorial_export = simulate_export(two_by_two, PlantedEffects(case_arm_sd=1.0), per_arm=20, seed=1)
    factorial = trial_indicators(clean_trials(factorial_export.trials))
    factors = factors_of(two_by_two.to_json())
    rng = np.random.default_rng(1)
    small_arm = simulate_reader_study(VARIANCE_STRUCTURES["medium"], (3, 8), 100, (0.75, 0.75), rng, "split-plot")
    six_arm = simulate_reader_study(VARIANCE_STRUCTURES["medium"], (6, 8), 100, (0.75, 0.75), rng, "split-plot")
    nico = pd.read_csv(REPO / "tests" / "data" / "nico_cad_roc.csv")
    cad = nico[nico["reader"] == "CAD"].set_index("case")["rating"]
    radiologists = nico[nico["reader"] != "CAD"].assign(modality="mammography")
    readers = reader_study(radiologists, reader="reader", case="case", truth="truth", score="rating",
                           modality="modality", min_modalities=1)
    van_dyke = reader_study(pd.read_csv(REPO / "tests" / "data" / "van_dyke.csv"), reader="reader", case="case",
                            truth="truth", score="rating", modality="treatment")
    pilot = PilotEstimates.from_mrmc_json(json.loads(json.dumps(json_safe(or_analysis(van_dyke).to_json()))))

    calls = {
        "crossed risk difference, 20 per arm (between)": lambda: crossed_risk_difference(
            between, "over_reliance", "rely", "verify"),
        "crossover, 15 per sequence, cases random (within)": lambda: crossover_analysis(
            within_indicators, sequence, "over_reliance", "rely", "verify"),
        "OR split-plot, 3 vs 8 readers (generalised test)": lambda: or_analysis(small_arm),
        "OR split-plot, 6 vs 8 readers (Satterthwaite)": lambda: or_analysis(six_arm),
        "AI vs 9 readers, 200 cases": lambda: ai_vs_readers(readers, cad.reindex(
            [int(c) for c in readers.cases]).to_numpy(float)),
        "pilot power, one readers x cases x generalisation": lambda: pilot_power(pilot, 10, 165),
        "factorial: within-factor contrast, 20 per cell": lambda: factor_contrast(
            factorial, factors, "over_reliance", "explanation", "contour", "none"),
        "factorial: interaction, 20 per cell": lambda: interaction(
            factorial, factors, "over_reliance", "workflow", "explanation"),
    }
    rows = []
    reference = None
    for name, call in calls.items():
        seconds = median_seconds(call, args.repeats)
        reference = reference or seconds
        rows.append({"call": name, "median_ms": round(seconds * 1000, 2), "ratio": round(seconds / reference, 2)})
        print(f"{name:<55} {seconds * 1000:9.2f} ms   x{seconds / reference:6.2f}")
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "statistics_bench.json").write_text(json.dumps({"repeats": args.repeats, "python": sys.version.split()[0],
                                                            "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
