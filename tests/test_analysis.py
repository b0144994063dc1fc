"""The analysis: hand-computed fixtures, recovery of planted effects, bad input, the CLI and report."""

from __future__ import annotations

import html
import json
import math
import re
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT, run_cli
from scipy import stats
from sklearn.metrics import roc_auc_score
from support.checks import observed_competence

from xai_lab.analysis import analyze_export, summary, write_outputs
from xai_lab.analysis.competence import analyze_item, partial_eta_squared_ci
from xai_lab.analysis.load import clean_trials
from xai_lab.analysis.reliance import arm_metrics, trial_indicators
from xai_lab.analysis.trial_models import fit_trial_models
from xai_lab.study.design_file import load_design
from xai_lab.study.export import COLUMNS, table_file
from xai_lab.study.planted import PlantedEffects, expected_rating, simulate_export

N, P = "normal", "pneumonia"

# (participant, arm, truth, ai, initial, final, confidence, rt_ms, toggles): every reliance-quadrant cell
FIXTURE_TRIALS = [
    ("v1", "verify", N, N, N, N, 90, 1000, 1),  # AI right, initial right, kept
    ("v1", "verify", N, P, N, N, 80, 2000, 0),  # AI wrong, initial right, kept (RSR hit)
    ("v1", "verify", P, P, N, P, 60, 3000, 2),  # AI right, initial wrong, switched (RAIR hit)
    ("v1", "verify", P, N, P, N, 70, 4000, 0),  # AI wrong, initial right, switched (RSR miss)
    ("v2", "verify", N, P, P, P, 50, 5000, 0),  # AI wrong, initial wrong = AI (over-reliance)
    ("v2", "verify", P, P, N, N, 40, 6000, 1),  # AI right, initial wrong, kept (RAIR miss, under-reliance)
    ("r1", "rely", N, N, None, N, 100, 1500, 0),
    ("r1", "rely", P, N, None, N, 75, 2500, 0),  # follows wrong advice
    ("r1", "rely", P, P, None, N, 25, 3500, 3),  # rejects right advice
    ("c1", "control", N, None, None, N, 70, 1000, 0),
    ("c1", "control", P, None, None, P, 90, 3000, 0),
]

EXPECTED = {  # worked by hand in the comments of FIXTURE_TRIALS and docs/analysis.md
    "verify": {"accuracy_initial": 3 / 6, "accuracy_final": 3 / 6, "ai_accuracy": 3 / 6, "accuracy_gain": 0.0,
               "agreement": 4 / 6, "over_reliance": 2 / 3, "under_reliance": 1 / 3, "switch_fraction": 2 / 4,
               "rair": 1 / 2, "rsr": 1 / 2, "brier": 1.11 / 6, "ece": 2.3 / 6, "median_rt_final_ms": 3500.0,
               "overlay_toggles": 4 / 6},
    "rely": {"accuracy_initial": None, "accuracy_final": 1 / 3, "ai_accuracy": 2 / 3, "accuracy_gain": None,
             "agreement": 2 / 3, "over_reliance": 1.0, "under_reliance": 1 / 2, "switch_fraction": None,
             "rair": None, "rsr": None, "brier": 0.625 / 3, "ece": 1 / 3, "median_rt_final_ms": 2500.0,
             "overlay_toggles": 1.0},
    "control": {"accuracy_initial": None, "accuracy_final": 1.0, "ai_accuracy": None, "accuracy_gain": None,
                "agreement": None, "over_reliance": None, "under_reliance": None, "switch_fraction": None,
                "rair": None, "rsr": None, "brier": 0.05, "ece": 0.2, "median_rt_final_ms": 2000.0,
                "overlay_toggles": None},
}

# one rating per rater (the Yang/Dai design): means 6, 5, 3; SS between 14, SS within 6
FIXTURE_RATINGS = {"control": [6, 7, 5], "verify": [5, 4, 6], "rely": [3, 4, 2]}


def write_fixture(folder: Path, trials=FIXTURE_TRIALS, ratings=FIXTURE_RATINGS, drop: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    people = sorted({(t[0], t[1]) for t in trials})
    participants = pd.DataFrame([{**{c: None for c in COLUMNS["participants"]}, "study_id": "fx",
                                  "participant_id": p, "arm": arm, "stratum": "all", "status": "completed",
                                  "pilot": False} for p, arm in people], columns=list(COLUMNS["participants"]))
    rows = []
    for index, (person, arm, truth, ai, initial, final, confidence, rt, toggles) in enumerate(trials):
        rows.append({**{c: None for c in COLUMNS["trials"]}, "study_id": "fx", "participant_id": person, "arm": arm,
                     "trial_index": index, "case_id": f"case{index}", "true_label": truth, "ai_label": ai,
                     "ai_correct": None if ai is None else ai == truth, "overlay_shown": ai is not None,
                     "initial_label": initial, "initial_confidence": None if initial is None else 50,
                     "final_label": final, "final_confidence": confidence, "final_correct": final == truth,
                     "rt_final_ms": rt, "overlay_toggles": toggles})
    ratings_rows = [{**{c: None for c in COLUMNS["ratings"]}, "study_id": "fx", "rater_id": f"rater-{arm}-{k}",
                     "target_kind": "vignette", "target_id": f"vignette-{arm}", "target_arm": arm,
                     "item": "competence", "score": score, "scale_min": 1, "scale_max": 7}
                    for arm, scores in ratings.items() for k, score in enumerate(scores)]
    frames = {"participants": participants, "trials": pd.DataFrame(rows, columns=list(COLUMNS["trials"])),
              "ratings": pd.DataFrame(ratings_rows, columns=list(COLUMNS["ratings"]))}
    for name, frame in frames.items():
        frame.drop(columns=[c for c in drop if c in frame.columns]).to_csv(folder / f"{name}.csv", index=False)
    (folder / "flow.json").write_text(json.dumps({"enrolled": 4, "declined_consent": 0, "not_yet_allocated": 0,
                                                  "by_arm": {}}))
    return folder


# ---------------------------------------------------------------- hand-computed fixtures


def test_hand_computed_metrics_and_nulls(tmp_path):
    result = summary(analyze_export(write_fixture(tmp_path / "export"), resamples=200))
    assert result["n_participants"] == {"verify": 2, "rely": 1, "control": 1}
    for arm, expected in EXPECTED.items():
        for metric, value in expected.items():
            got = result["by_arm"][arm][metric]
            if value is None:
                assert got is None, (arm, metric, got)
            else:
                assert got == pytest.approx(value, abs=1e-12), (arm, metric, got)
    # a metric that does not apply has no interval either
    assert result["by_arm_ci"]["control"]["over_reliance"] == [None, None]


def test_hand_computed_one_way_anova(tmp_path):
    competence = summary(analyze_export(write_fixture(tmp_path / "export"), resamples=200))["competence"]
    assert competence["model"] == "one-way ANOVA"
    assert competence["means"] == pytest.approx({"control": 6.0, "verify": 5.0, "rely": 3.0})
    assert competence["effect_size"]["partial_eta_squared"] == pytest.approx(14 / 20)
    assert competence["effect_size"]["F"] == pytest.approx(7.0)
    contrasts = {(c["a"], c["b"]): c for c in competence["contrasts"]}
    assert set(contrasts) == {("control", "verify"), ("control", "rely"), ("verify", "rely")}
    se = math.sqrt(1 / 3 + 1 / 3)  # every arm's variance is 1; Welch df = (2/3)^2 / (2 (1/3)^2 / 2) = 4
    for (a, b), contrast in contrasts.items():
        difference = float(pd.Series(FIXTURE_RATINGS[a]).mean() - pd.Series(FIXTURE_RATINGS[b]).mean())
        assert contrast["estimate"] == pytest.approx(difference)
        assert contrast["p_value"] == pytest.approx(2 * stats.t.sf(abs(difference) / se, 4))
        half = stats.t.ppf(0.975, 4) * se
        assert [contrast["ci_low"], contrast["ci_high"]] == pytest.approx([difference - half, difference + half])
        assert contrast["cohens_d"] == pytest.approx(difference)  # pooled SD of the pair is 1
    half = stats.t.ppf(0.975, 2) * math.sqrt(1 / 3)  # a mean's CI: its own SD, n - 1 = 2 df
    assert competence["mean_ci"]["rely"] == pytest.approx([3 - half, 3 + half])
    p_sorted = sorted(c["p_value"] for c in contrasts.values())  # Holm: k-th smallest times (m - k + 1), cumulative max
    holm = [min(1, max(p_sorted[i] * (3 - i) for i in range(k + 1))) for k in range(3)]
    assert sorted(c["p_holm"] for c in contrasts.values()) == pytest.approx(holm)


def test_vignette_and_peer_record_ratings_are_analysed_apart(tmp_path):
    """Never pooled by target_arm: a fallback vignette's "control" is no group of a verify-vs-rely study."""
    from xai_lab.analysis.competence import analyze_competence

    rows = [{"rater_id": f"r{i}", "target_id": f"rec{i}", "target_kind": "peer_record", "target_arm": arm,
             "item": "competence", "score": score} for i, (arm, score) in
            enumerate([("verify", 5), ("verify", 6), ("rely", 3), ("rely", 4)])]
    rows += [{"rater_id": "r9", "target_id": "v-control", "target_kind": "vignette", "target_arm": "control",
              "item": "competence", "score": 7},
             {"rater_id": "r8", "target_id": "v-rely", "target_kind": "vignette", "target_arm": "rely",
              "item": "competence", "score": 2}]
    results = analyze_competence(pd.DataFrame(rows), first_kind="peer_record")
    assert [(r.kind, r.label) for r in results] == [("peer_record", "competence (peer records)"),
                                                    ("vignette", "competence (vignettes)")]
    assert set(results[0].means) == {"verify", "rely"} and results[0].means["verify"] == 5.5
    assert set(results[1].means) == {"control", "rely"}


def test_all_zero_decision_times_get_a_readable_axis():
    from xai_lab.analysis.reliance import Estimate
    from xai_lab.analysis.report_plots import _family

    zero = {"median_rt_final_ms": Estimate(0.0, 0.0, 0.0, 10)}
    figure = _family({"verify": zero, "rely": zero}, ["verify", "rely"], {"verify": 5, "rely": 5},
                     ["median_rt_final_ms"], None)
    assert figure.axes[0].get_ylim()[1] == pytest.approx(1.0)  # seconds, not matplotlib's 0-0.001


def test_partial_eta_squared_ci_inverts_the_noncentral_f():
    low, high = partial_eta_squared_ci(20.0, 2, 6)
    assert 0 < low < 20 * 2 / (20 * 2 + 6) < high < 1  # eta_p^2 = F df1 / (F df1 + df2)
    # at each bound's noncentrality lambda = eta / (1 - eta) * N, the observed F sits at 97.5% / 2.5%
    for bound, quantile in ((low, 0.975), (high, 0.025)):
        assert stats.ncf.cdf(20.0, 2, 6, bound / (1 - bound) * 9) == pytest.approx(quantile, abs=1e-6)
    # F(2, 6) = 7 has p = 0.027 > 0.025: the CI reaches zero, as the F test says it should
    assert stats.f.sf(7.0, 2, 6) > 0.025 and partial_eta_squared_ci(7.0, 2, 6)[0] == 0.0


def test_expected_rating_accounts_for_rounding_and_clipping():
    assert expected_rating(4.0, 1.0, 1, 7) == pytest.approx(4.0, abs=1e-9)  # symmetric: unchanged
    assert expected_rating(6.5, 1.2, 1, 7) < 6.5  # the top of the scale clips
    assert expected_rating(100, 1, 1, 7) == pytest.approx(7.0)


# ---------------------------------------------------------------- recovery of planted effects


def _recovery(seed: int) -> dict[str, bool]:
    """One simulated verify-vs-rely study (peer records, 3 per rater) and one Yang/Dai vignette study,
    analysed with the report's own functions (only the estimates under test, to keep 50 seeds fast)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one process per core
    effects = PlantedEffects()
    covered = {}
    main = simulate_export(load_design(REPO_ROOT / "studies" / "verify_vs_rely.toml"), effects, per_arm=40, seed=seed)
    trials = clean_trials(main.trials)
    for arm in ("verify", "rely"):
        estimate = arm_metrics(trial_indicators(trials[trials["arm"] == arm]), 1000, seed)["over_reliance"]
        covered[f"over_reliance {arm}"] = estimate.ci_low <= effects.over_reliance[arm] <= estimate.ci_high
    peer = analyze_item("competence", main.ratings[main.ratings["item"] == "competence"].reset_index(drop=True))
    truth = observed_competence(effects)
    for arm, (low, high) in peer.mean_cis.items():
        covered[f"peer-record competence {arm}"] = low <= truth[arm] <= high
    # the Yang/Dai design and size: one vignette per rater, ~90 raters per arm
    vignettes = simulate_export(load_design(REPO_ROOT / "studies" / "competence_vignettes.toml"), effects,
                                per_arm=90, seed=seed).ratings
    yang_dai = analyze_item("clinical_skill", vignettes[vignettes["item"] == "clinical_skill"].reset_index(drop=True))
    truth = observed_competence(effects, with_targets=False)
    for arm, (low, high) in yang_dai.mean_cis.items():
        covered[f"vignette competence {arm}"] = low <= truth[arm] <= high
    ordering = all(c["estimate"] > 0 and c["p_holm"] < 0.05 for c in yang_dai.contrasts)
    covered["Yang/Dai ordering control > verify > rely"] = ordering and yang_dai.model == "one-way ANOVA"
    return covered


@pytest.mark.slow  # Monte Carlo: 50 simulated studies, each analysed in full
def test_planted_effects_are_recovered_within_their_cis_in_90_percent_of_50_seeds():
    with ProcessPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(_recovery, range(50)))
    rates = {key: sum(run[key] for run in runs) / len(runs) for key in runs[0]}
    assert all(rate >= 0.9 for rate in rates.values()), rates


def test_simulated_switching_plants_exact_population_rates():
    effects = PlantedEffects()
    for arm in ("verify", "rely"):
        take_wrong, take_right = effects.switch_probabilities(arm)
        assert (1 - effects.skill) + effects.skill * take_wrong == pytest.approx(effects.over_reliance[arm])
        assert (1 - effects.skill) * (1 - take_right) == pytest.approx(effects.under_reliance[arm])


# ---------------------------------------------------------------- bad input


def test_trials_without_a_contract_column_stop_the_analysis(tmp_path):
    """Never a report that silently lacks the trials: exit 2 naming the columns, nothing written."""
    export = write_fixture(tmp_path / "export", drop=("final_label", "ai_label"))
    result = run_cli("analyze", export, "--out", tmp_path / "out")
    assert result.code == 2 and "lacks the contract column(s) ai_label, final_label" in result.err
    assert result.err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_ratings_without_a_contract_column_are_set_aside_and_the_rest_renders(tmp_path):
    export = write_fixture(tmp_path / "export", drop=("target_arm",))
    result = run_cli("analyze", export, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    assert "ratings file lacks column(s) target_arm" in result.err
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["competence"] is None and written["by_arm"]["verify"]["accuracy_final"] is not None


def test_missing_files_stop_the_analysis_unless_partial_is_allowed(tmp_path):
    """A missing participants or ratings file is named in one line (exit 2); with --allow-partial the report
    names it at the top and makes no claim that needs it."""
    export = write_fixture(tmp_path / "export")
    table_file(export, "ratings").unlink()
    table_file(export, "participants").unlink()
    refused = run_cli("analyze", export, "--out", tmp_path / "refused")
    assert refused.code == 2 and len(refused.err.strip().splitlines()) == 1
    assert "has no participants.csv or ratings.csv" in refused.err and "--allow-partial" in refused.err
    assert not (tmp_path / "refused").exists()
    result = run_cli("analyze", export, "--out", tmp_path / "out", "--allow-partial", "--resamples", "200")
    assert result.code == 0, result.err
    assert "warning: The export has no participants file" in result.err
    assert "warning: The export has no ratings file" in result.err
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["competence"] is None and written["missing_files"] == ["participants", "ratings"]
    report = html.unescape((tmp_path / "out" / "report.html").read_text())
    top = report[:report.index('id="primary"')]
    assert "The export has no participants file" in top and "The export has no ratings file" in top
    # no sentence that needs the participants file: no pilot claim, no sensitivity analyses
    assert "non-pilot" not in report and "neither simulated nor a pilot" not in report
    assert "Sensitivity analyses of the primary estimand" not in report
    assert "no sensitivity analysis could be run" in report
    assert "Not analysed: the export has no ratings file." in report


def test_a_design_without_peer_rating_needs_no_ratings_file(tmp_path):
    export = write_fixture(tmp_path / "export")
    table_file(export, "ratings").unlink()
    (export / "design.json").write_text(json.dumps({"id": "fx", "arms": ["verify", "rely", "control"],
                                                    "peer_rating": {"kind": "none"}}))
    result = run_cli("analyze", export, "--out", tmp_path / "out", "--resamples", "200")
    assert result.code == 0, result.err
    assert "warning" not in result.err


def test_analysis_outputs_are_private_and_spreadsheet_safe(tmp_path):
    export = write_fixture(tmp_path / "export")
    ratings = pd.read_csv(table_file(export, "ratings"))
    ratings["item"] = " =HYPERLINK(\"http://x\")"  # an item named in a design file, reaching the tables verbatim
    ratings.to_csv(table_file(export, "ratings"), index=False)
    result = run_cli("analyze", export, "--out", tmp_path / "out", "--resamples", "200")
    assert result.code == 0, result.err
    written = [path for path in (tmp_path / "out").rglob("*") if path.is_file()]
    assert written and all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in written), \
        [(path.name, oct(path.stat().st_mode)) for path in written]
    cells = "".join(path.read_text() for path in written if path.suffix == ".csv")
    # the item name (the loader trims its space), neutralised wherever a table shows it
    assert "'=HYPERLINK" in cells and all(not cell.strip(' "').startswith("=") for cell in cells.replace("\n", ",")
                                          .split(","))


def test_nothing_usable_is_one_line_and_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["analyze", empty, "--out", tmp_path / "o"], ["analyze", tmp_path / "nowhere", "--out", tmp_path],
                 ["analyze", "--out", tmp_path], ["analyze", empty, "--study", "x"], ["analyze", empty]):
        result = run_cli(*args)
        assert result.code == 2, args
        assert len(result.err.strip().splitlines()) == 1 and result.err.startswith("xai-lab: error:"), result.err


def test_an_arm_with_no_trials_is_null_and_said(tmp_path):
    export = write_fixture(tmp_path / "export", trials=[t for t in FIXTURE_TRIALS if t[1] != "control"])
    people = pd.read_csv(table_file(export, "participants"))
    people.loc[len(people)] = {**people.iloc[0].to_dict(), "participant_id": "c9", "arm": "control"}
    people.to_csv(table_file(export, "participants"), index=False)
    analysis = analyze_export(export, resamples=200)
    assert any("arm 'control' has participants but no answered trials" in n for n in analysis.notes)
    assert summary(analysis)["n_participants"]["control"] == 0
    write_outputs(analysis, tmp_path / "out")
    assert "arm 'control' has participants" in html.unescape((tmp_path / "out" / "report.html").read_text())


def test_a_single_rater_and_identical_answers(tmp_path):
    identical = [(p, arm, N, ai, ini, N, 80, 1000, 0) for p, arm, _, ai, ini, _, *_ in FIXTURE_TRIALS]
    identical = [(p, arm, truth, None if ai is None else N, None if ini is None else N, final, c, rt, tg)
                 for p, arm, truth, ai, ini, final, c, rt, tg in identical]
    export = write_fixture(tmp_path / "export", trials=identical, ratings={"control": [5], "rely": [5]})
    ratings = pd.read_csv(table_file(export, "ratings")).assign(rater_id="only-rater")
    ratings.to_csv(table_file(export, "ratings"), index=False)
    analysis = analyze_export(export, resamples=200)
    result = summary(analysis)
    assert result["competence"]["model"] == "none" and "every score is 5" in result["competence"]["why"]
    assert any("every trial has correct = 1" in note for note in result["trial_models"])
    assert result["by_arm"]["verify"]["over_reliance"] is None  # no AI-wrong trial at all
    assert result["by_arm"]["verify"]["accuracy_final"] == 1.0
    write_outputs(analysis, tmp_path / "out")  # still renders

    ratings.assign(score=[3, 6]).to_csv(table_file(export, "ratings"), index=False)
    single = summary(analyze_export(export, resamples=200))["competence"]
    assert single["model"] == "none" and "single rater" in single["why"]


# ---------------------------------------------------------------- report and CLI


def test_report_is_self_contained_with_every_section(tmp_path):
    effects = PlantedEffects()
    design = load_design(REPO_ROOT / "studies" / "verify_vs_rely.toml")
    simulate_export(design, effects, per_arm=12, seed=3).write(tmp_path / "export")
    result = run_cli("analyze", tmp_path / "export", "--out", tmp_path / "out", "--resamples", "200")
    assert result.code == 0, result.err
    html = (tmp_path / "out" / "report.html").read_text()
    for heading in ("What the data say", "Participant flow", "Metrics by arm", "Reliance quadrant",
                    "Confidence calibration", "Trial-level models", "Peer-rated competence"):
        assert heading in html
    assert html.count("data:image/png;base64,") >= 4
    assert not re.search(r"""(src|href)=['"]?(https?:|//)""", html)  # nothing fetched when opened offline
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    keys = {"accuracy_initial", "accuracy_final", "agreement", "over_reliance", "under_reliance", "switch_fraction",
            "rair", "rsr", "brier", "ece", "median_rt_final_ms"}
    assert all(keys <= set(metrics) for metrics in written["by_arm"].values())
    assert {"item", "means", "contrasts"} <= set(written["competence"])
    assert {"a", "b", "estimate", "ci_low", "ci_high", "p_value", "p_holm", "model"} <= \
        set(written["competence"]["contrasts"][0])
    for table in ("metrics_by_arm", "reliance_quadrant", "calibration_bins", "trial_contrasts", "competence_means",
                  "competence_contrasts"):
        assert table_file(tmp_path / "out", table) is not None


def test_power_command_writes_table_and_plot(tmp_path):
    result = run_cli("power", "--design", REPO_ROOT / "studies" / "verify_vs_rely.toml", "--n", "8,16", "--reps", "4",
                     "--effect", "over_reliance:rely=0.6,verify=0.25", "--out", tmp_path / "power")
    assert result.code == 0, result.err
    table = pd.read_csv(tmp_path / "power" / "power.csv")
    assert set(table["per_arm"]) == {8, 16} and table["power"].between(0, 1).all()
    assert "primary: over_reliance rely - verify" in set(table["contrast"])
    assert (tmp_path / "power" / "power.png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["--effect", "over_reliance=big"], "--effect 'over_reliance=big' is not understood"),
    (["--effect", "over_reliance:rely=0.1"], "over_reliance for rely (0.1) must be from 1 - skill"),
    (["--n", "ten"], "--n must be comma-separated whole numbers"),
    (["--reps", "0"], "--reps must be at least 1"),
    (["--effect", "case_arm_sd=-1"], "case_arm_sd is a standard deviation: give 0 or more, got -1.0"),
])
def test_power_bad_input_is_one_line_and_exit_2(args, message):
    result = run_cli("power", "--design", REPO_ROOT / "studies" / "verify_vs_rely.toml", *args)
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err


# ---------------------------------------------------------------- through the real study engine


def test_analyze_study_from_the_database_after_simulated_participants(study_home, monkeypatch):
    """`xai-lab simulate` (the service, the SQLite event log) then `xai-lab analyze --study t`: the report
    lands where the researcher dashboard links it, and the counts match the export."""
    from conftest import use_lab

    from xai_lab.paths import report_dir

    use_lab(study_home, monkeypatch)
    design = study_home / "t.toml"
    simulated = run_cli("simulate", "--design", design, "--participants", "24", "--seed", "5", "--dropout", "0")
    assert simulated.code == 0, simulated.err
    only_simulated = run_cli("analyze", "--study", "t", "--resamples", "200", "--no-mixed")
    assert only_simulated.code == 2 and "every participant in the export is simulated" in only_simulated.err
    result = run_cli("analyze", "--study", "t", "--resamples", "200", "--no-mixed", "--rehearsal")
    assert result.code == 0, result.err
    assert "warning: Rehearsal: simulated and pilot participants are included (24 simulated" in result.err
    out = report_dir("t")
    assert (out / "report.html").is_file() and table_file(out / "export", "trials").is_file()
    trials = pd.read_csv(table_file(out / "export", "trials"))
    written = json.loads((out / "summary.json").read_text())
    assert written["n_participants"] == trials.groupby("arm")["participant_id"].nunique().to_dict()
    verify = trials[trials["arm"] == "verify"]
    wrong = verify[verify["ai_label"] != verify["true_label"]]
    followed = (wrong["final_label"] == wrong["ai_label"]).mean()
    assert written["by_arm"]["verify"]["over_reliance"] == pytest.approx(followed)
    assert written["by_arm"]["control"]["over_reliance"] is None
    assert written["competence"]["item"] == "competence" and written["flow"]["enrolled"] == 24
    # the reader-study ROC analysis: verify's two looks (crossed) and the arms' final readings (split-plot)
    mrmc = written["mrmc"]
    assert mrmc["sequential"]["design"] == "crossed" and mrmc["between_arms"]["design"] == "split-plot"
    assert set(mrmc["between_arms"]["modalities"]) == {"verify", "rely", "control"}
    assert mrmc["sequential"]["n_readers"] == trials.loc[trials["arm"] == "verify", "participant_id"].nunique()
    report = (out / "report.html").read_text()
    assert "Reader-study ROC analysis (MRMC)" in report
    assert "Averaged over" in report and (out / "mrmc_contrasts.csv").is_file()
    # the AI alone as one more reader: its AUC is scikit-learn's on its own per-case probability
    shown = trials[trials["ai_label"].notna()].drop_duplicates("case_id")
    ai_probability = np.where(shown["ai_label"] == shown["score_class"], shown["ai_confidence"],
                              1 - shown["ai_confidence"])
    ai_auc = roc_auc_score(shown["true_label"] == shown["score_class"], ai_probability)
    comparisons = {c["modality"]: c for c in mrmc["ai_vs_readers"]}
    assert {"control", "verify, first look (alone)"} <= set(comparisons)
    assert all(c["ai_fom"] == pytest.approx(ai_auc) for c in comparisons.values())
    control = comparisons["control"]
    assert control["readers_mean"] == pytest.approx(np.mean(list(control["reader_foms"].values())))
    assert "AI alone vs readers" in report


def _null_over_reliance_p(seed: int) -> float:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    effects = PlantedEffects(over_reliance={"verify": 0.45, "rely": 0.45}, under_reliance={"verify": 0.1, "rely": 0.1})
    export = simulate_export(load_design(REPO_ROOT / "studies" / "demo.toml"), effects, per_arm=30, seed=seed)
    contrasts = fit_trial_models(clean_trials(export.trials), mixed=False).contrasts
    row = contrasts[(contrasts["outcome"] == "agree") & (contrasts["ai"] == "AI wrong") & (contrasts["a"] == "verify")]
    return float(row["p_value"].iloc[0])


@pytest.mark.slow
def test_gee_over_reliance_contrast_keeps_its_type_i_error():
    """No planted difference, the demo's small design (8 trials, 2 AI-wrong, 30 per arm): the GEE
    contrast rejects at 5% in 5% of 400 studies (binomial 95% range 0.03-0.07)."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        p_values = list(pool.map(_null_over_reliance_p, range(400)))
    rate = sum(p < 0.05 for p in p_values) / len(p_values)
    assert 0.025 <= rate <= 0.075, rate


def test_holm_matches_statsmodels_and_keeps_missing_p_values_missing():
    from statsmodels.stats.multitest import multipletests

    from xai_lab.analysis.comparison import holm

    rng = np.random.default_rng(7)
    for size in (1, 2, 3, 7, 20):
        p = rng.uniform(0, 0.2, size) ** rng.uniform(0.5, 3)
        p[rng.integers(0, size)] = p[0]  # ties
        np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=0, atol=1e-15)
    with_missing = holm([0.01, float("nan"), 0.04, 0.03])
    assert np.isnan(with_missing[1])
    np.testing.assert_allclose(with_missing[[0, 2, 3]], multipletests([0.01, 0.04, 0.03], method="holm")[1])
