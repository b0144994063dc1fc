"""Reader-study statistics against published reference outputs: MRMCaov's Van Dyke sensitivity and
fixed-reader tables, Hillis-Obuchowski-Berbaum pilot-based power as RJafroc computes it, RJafroc's
stored expected values for CAD vs radiologists; the small fixes of the statistics audit; and (slow)
the split-plot type I error with unequal arms by Roe-Metz simulation.

The data (tests/data, see its README): Van Dyke et al. (1993), 5 readers x 2 modalities x 114 cases,
as distributed in RJafroc (inst/extdata/RocData.csv); Karssemeijer's CAD vs 9 radiologists, 200
mammograms (RJafroc's dataset09)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT, run_cli

from xai_lab.analysis.ai_vs_readers import ai_scores_from, ai_vs_readers
from xai_lab.analysis.behrens_fisher import generalised_test
from xai_lab.analysis.mrmc import or_analysis
from xai_lab.analysis.pilot_power import PilotEstimates, cases_needed, pilot_power, readers_needed
from xai_lab.analysis.reader_study import ReaderStudyError, reader_study
from xai_lab.analysis.results import json_safe
from xai_lab.analysis.roe_metz import VARIANCE_STRUCTURES, simulate_reader_study

DATA = REPO_ROOT / "tests" / "data"
VAN_DYKE_COLUMNS = {"reader": "reader", "case": "case", "truth": "truth", "score": "rating", "modality": "treatment"}


def van_dyke(score: str = "rating") -> pd.DataFrame:
    frame = pd.read_csv(DATA / "van_dyke.csv")
    return frame.assign(call=(frame["rating"] >= 3).astype(int)) if score == "call" else frame


def cli_mrmc(path: Path, *extra: str, score: str = "rating"):
    return run_cli("mrmc", path, "--reader", "reader", "--case", "case", "--truth", "truth", "--score", score,
                   "--modality", "treatment", *extra)


# ---------------------------------------------------------------- MRMCaov: Van Dyke


def test_van_dyke_sensitivity_reproduces_mrmcaov():
    """MRMCaov's JSS paper: binary_sens(truth, rating >= 3) on VanDyke. The jackknife runs over the 45
    abnormal cases only (over all 114 it gave F 6.644)."""
    study = reader_study(van_dyke("call"), **{**VAN_DYKE_COLUMNS, "score": "call"})
    result = or_analysis(study, "sensitivity")
    random = result.random
    assert random.F == pytest.approx(6.689493, abs=1e-4)
    assert random.ddf == pytest.approx(15.71732, abs=1e-4)
    assert random.p_value == pytest.approx(0.02008822, abs=1e-6)
    covariances = result.covariances
    assert (covariances.var, covariances.cov1, covariances.cov2, covariances.cov3) == pytest.approx(
        (0.0023681257, 0.0009943883, 0.0010145903, 0.0006604938), abs=1e-9)
    contrast = random.contrasts[0]
    assert (contrast.estimate, contrast.se, contrast.ci_low, contrast.ci_high) == pytest.approx(
        (-0.09777778, 0.03780451, -0.1780371, -0.0175185), abs=1e-6)
    first, second = random.modalities
    assert (first.value, first.se, first.df, first.ci_low, first.ci_high) == pytest.approx(
        (0.8222222, 0.05893747, 14.456811, 0.6961876, 0.9482568), abs=1e-6)
    # MRMCaov prints 1.0000000: a sensitivity's interval ends at 1 (the t interval reached 1.0072)
    assert (second.value, second.df, second.ci_low, second.ci_high) == pytest.approx(
        (0.92, 7.575855, 0.8328691, 1.0), abs=1e-6)


def test_sensitivity_does_not_depend_on_the_normal_cases_in_the_table():
    calls = van_dyke("call")
    extra = calls[calls["truth"] == 0].assign(case=lambda f: f["case"] + 1000,
                                              call=lambda f: (f["case"] % 2).astype(int))
    base = or_analysis(reader_study(calls, **{**VAN_DYKE_COLUMNS, "score": "call"}), "sensitivity").random
    more = or_analysis(reader_study(pd.concat([calls, extra]), **{**VAN_DYKE_COLUMNS, "score": "call"}),
                       "sensitivity").random
    assert (more.F, more.ddf, more.p_value) == pytest.approx((base.F, base.ddf, base.p_value), rel=1e-12)


def test_van_dyke_fixed_readers_per_reader_contrasts_reproduce_mrmcaov():
    """MRMCaov's summary under fixed readers: the global chi-square and each reader's own contrast."""
    result = or_analysis(reader_study(van_dyke(), **VAN_DYKE_COLUMNS))
    fixed = result.fixed_readers
    assert fixed.F * fixed.ndf == pytest.approx(5.475953, abs=1e-6) and fixed.ddf is None
    assert fixed.p_value == pytest.approx(0.01927984, abs=1e-8)
    published = [(-0.02818035, 0.02551213, 0.26933885), (-0.04653784, 0.02630183, 0.07683102),
                 (-0.01787440, 0.03120965, 0.56683414), (-0.02624799, 0.01729129, 0.12901715),
                 (-0.10016103, 0.04405746, 0.02300099)]
    for contrast, (estimate, se, p) in zip(result.reader_contrasts, published, strict=True):
        assert (contrast.estimate, contrast.se, contrast.p_value) == pytest.approx((estimate, se, p), abs=1e-8)


def test_cli_prints_the_fixed_reader_test_as_a_chi_square(tmp_path):
    result = cli_mrmc(DATA / "van_dyke.csv")
    assert result.code == 0, result.err
    assert "readers fixed, cases random: chi-square(1) = 5.476, p = 0.0193" in result.out
    assert "F(1, inf)" not in result.out and "reader 4: 0 - 1 -0.1002" in result.out


# ---------------------------------------------------------------- HOB 2011 power from a pilot


@pytest.fixture(scope="module")
def van_dyke_pilot() -> PilotEstimates:
    result = or_analysis(reader_study(van_dyke(), **VAN_DYKE_COLUMNS))
    return PilotEstimates.from_mrmc_json(json.loads(json.dumps(json_safe(result.to_json()))))


def test_pilot_power_reproduces_hillis_obuchowski_berbaum_as_rjafroc_computes_it(van_dyke_pilot):
    """Van Dyke as the pilot, its observed difference as the effect, 10 readers (RJafroc SsPowerGivenJK)."""
    assert pilot_power(van_dyke_pilot, 10, 165, "random") == pytest.approx(0.80541995, abs=1e-8)
    assert pilot_power(van_dyke_pilot, 10, 131, "fixed_readers") == pytest.approx(0.80091813, abs=1e-8)
    assert pilot_power(van_dyke_pilot, 10, 53, "fixed_cases") == pytest.approx(0.80496663, abs=1e-8)
    assert cases_needed(van_dyke_pilot, 10, 0.8, "fixed_readers") == 131
    assert cases_needed(van_dyke_pilot, 10, 0.8, "fixed_cases") == 53
    needed = cases_needed(van_dyke_pilot, 10, 0.8, "random")
    assert pilot_power(van_dyke_pilot, 10, needed) >= 0.8 > pilot_power(van_dyke_pilot, 10, needed - 1)
    # random readers: the reader term stays however many cases, so 2 readers never reach 0.8
    assert cases_needed(van_dyke_pilot, 2, 0.8, "random") is None


def test_simulated_mrmc_power_takes_an_abnormal_share(tmp_path):
    result = run_cli("power", "--mrmc", "--readers", "3", "--cases", "40", "--reps", "10", "--abnormal-share", "0.3",
                     "--out", tmp_path)
    assert result.code == 0, result.err
    assert json.loads((tmp_path / "mrmc_power.json").read_text())["abnormal_share"] == 0.3
    bad = run_cli("power", "--mrmc", "--readers", "3", "--cases", "40", "--reps", "10", "--abnormal-share", "1.5")
    assert bad.code == 2 and "--abnormal-share must be between 0 and 1" in bad.err


def test_pilot_abnormal_share_scales_each_class_by_its_own_count(van_dyke_pilot):
    own_share = van_dyke_pilot.n_abnormal / (van_dyke_pilot.n_abnormal + van_dyke_pilot.n_normal)
    assert pilot_power(van_dyke_pilot, 10, 165, abnormal_share=own_share) == pytest.approx(0.80541995, abs=1e-8)
    terms = van_dyke_pilot.case_terms(114, 0.5)
    expected = {t: van_dyke_pilot.abnormal[t] * 45 / 57 + van_dyke_pilot.normal[t] * 69 / 57
                for t in ("var", "cov1", "cov2", "cov3")}
    assert terms == pytest.approx(expected)


def test_power_command_from_a_pilot(tmp_path):
    assert cli_mrmc(DATA / "van_dyke.csv", "--out", tmp_path / "pilot").code == 0
    result = run_cli("power", "--mrmc", "--pilot", tmp_path / "pilot" / "mrmc.json", "--readers", "10",
                     "--cases", "53,131,165", "--target-power", "0.8", "--out", tmp_path / "power")
    assert result.code == 0, result.err
    table = pd.read_csv(tmp_path / "power" / "mrmc_pilot_power.csv")
    rows = table.set_index(["generalisation", "cases"])["power"]
    assert rows[("random", 165)] == pytest.approx(0.80541995, abs=1e-8)
    assert rows[("fixed_readers", 131)] == pytest.approx(0.80091813, abs=1e-8)
    needed = json.loads((tmp_path / "power" / "mrmc_pilot_power.json").read_text())["cases_needed"]
    assert {row["generalisation"]: row["cases_needed"] for row in needed if "cases_needed" in row}[
        "fixed_cases"] == 53
    readers = {(row["generalisation"], row["cases"]): row["readers_needed"] for row in needed
               if "readers_needed" in row}
    assert readers[("random", 165)] == readers_needed(PilotEstimates.from_mrmc_json(
        json.loads((tmp_path / "pilot" / "mrmc.json").read_text())), 165) <= 10
    for args, message in ((["--pilot", tmp_path / "nothing.json"], "--pilot: no file at"),
                          (["--pilot", tmp_path / "power" / "mrmc_pilot_power.csv"], "is not a JSON file"),
                          (["--pilot", tmp_path / "power" / "mrmc_pilot_power.json"], "not an `xai-lab mrmc --json`")):
        bad = run_cli("power", "--mrmc", *args)
        assert bad.code == 2 and message in bad.err and bad.err.count("\n") == 1, bad.err


# ---------------------------------------------------------------- AI alone vs readers: RJafroc StCadVsRad


def nico_with_ai() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "nico_cad_roc.csv")
    cad = frame[frame["reader"] == "CAD"].set_index("case")["rating"]
    radiologists = frame[frame["reader"] != "CAD"].copy()
    return radiologists.assign(ai=radiologists["case"].map(cad), treatment="mammography")


def test_ai_vs_readers_reproduces_rjafroc_cad_vs_radiologists():
    """RJafroc's stored expected values (tests/testthat/goodValues361/SigTestCad, datasetCadLroc as ROC:
    the same ratings as dataset09), 1T-RRRC and 1T-RRFC, Wilcoxon FOM."""
    table = nico_with_ai()
    study = reader_study(table, **VAN_DYKE_COLUMNS, min_modalities=1)
    comparison = ai_vs_readers(study, ai_scores_from(table, study, "case", "ai"))[0]
    assert comparison.ai_fom == pytest.approx(0.81692708, abs=1e-8)
    assert comparison.readers_mean == pytest.approx(0.84866319, abs=1e-8)
    assert (comparison.var, comparison.cov2) == pytest.approx((0.00139955, 0.00092417), abs=1e-8)
    random = comparison.random
    assert (random.difference, random.t, random.df, random.p_value) == pytest.approx(
        (0.03173611, 0.99286888, 877.88637833, 0.32104743), abs=1e-7)
    assert (random.ci_low, random.ci_high) == pytest.approx((-0.03099877, 0.09447099), abs=1e-8)
    fixed = comparison.fixed_cases
    assert (fixed.t, fixed.df, fixed.p_value, fixed.ci_low, fixed.ci_high) == pytest.approx(
        (3.21350501, 8.0, 0.01235909, 0.00896235, 0.05450987), abs=1e-8)


def test_mrmc_command_with_an_ai_column(tmp_path):
    table = nico_with_ai()
    table.to_csv(tmp_path / "nico.csv", index=False)
    result = cli_mrmc(tmp_path / "nico.csv", "--ai", "ai", "--json")
    assert result.code == 0, result.err
    comparison = json.loads(result.out.splitlines()[-1])["ai_vs_readers"][0]
    assert comparison["random"]["p_value"] == pytest.approx(0.32104743, abs=1e-8)
    table.loc[table.index[0], "ai"] = 999  # one row disagrees about the AI's score of its case
    table.to_csv(tmp_path / "bad.csv", index=False)
    bad = cli_mrmc(tmp_path / "bad.csv", "--ai", "ai")
    assert bad.code == 2 and "different AI scores" in bad.err and bad.err.count("\n") == 1, bad.err
    one_modality = cli_mrmc(tmp_path / "nico.csv")
    assert one_modality.code == 2 and "give its scores with --ai" in one_modality.err


# ---------------------------------------------------------------- the audit's small items


def test_identifiers_are_read_as_written(tmp_path):
    """'1.1', '1.10' and '1.100' are three readers; '007' keeps its zeros."""
    frame = van_dyke()
    frame["reader"] = frame["reader"].map({0: "1.1", 1: "1.10", 2: "1.100", 3: "007", 4: "7"})
    frame.to_csv(tmp_path / "ids.csv", index=False)
    result = cli_mrmc(tmp_path / "ids.csv", "--json")
    assert result.code == 0, result.err
    readers = json.loads(result.out.splitlines()[-1])["readers"]["0"]
    assert set(readers) == {"1.1", "1.10", "1.100", "007", "7"}


def test_lower_is_positive_works_with_sensitivity(tmp_path):
    calls = van_dyke("call")
    calls.assign(call=1 - calls["call"]).to_csv(tmp_path / "flipped.csv", index=False)
    calls.to_csv(tmp_path / "calls.csv", index=False)
    flipped = cli_mrmc(tmp_path / "flipped.csv", "--fom", "sensitivity", "--lower-is-positive", "--json", score="call")
    original = cli_mrmc(tmp_path / "calls.csv", "--fom", "sensitivity", "--json", score="call")
    assert flipped.code == 0, flipped.err
    assert json.loads(flipped.out.splitlines()[-1])["F"] == pytest.approx(6.689493, abs=1e-4)
    assert json.loads(original.out.splitlines()[-1])["F"] == pytest.approx(6.689493, abs=1e-4)


def test_one_truth_and_empty_scores_are_named_plainly(tmp_path):
    frame = van_dyke()
    frame.assign(truth=0).to_csv(tmp_path / "normal.csv", index=False)
    result = cli_mrmc(tmp_path / "normal.csv")
    assert result.code == 2 and "every case has the same truth ('0'" in result.err and "--positive" not in result.err
    frame.loc[3, "rating"] = np.nan
    frame.to_csv(tmp_path / "gap.csv", index=False)
    result = cli_mrmc(tmp_path / "gap.csv")
    assert result.code == 2 and "(e.g. an empty cell)" in result.err and "np.float64" not in result.err, result.err


def test_perfect_separation_says_why_there_is_no_test(tmp_path):
    frame = van_dyke()
    frame.assign(rating=frame["truth"] * 4 + 1).to_csv(tmp_path / "perfect.csv", index=False)
    result = cli_mrmc(tmp_path / "perfect.csv")
    assert result.code == 0, result.err
    assert "no test (see the note below)" in result.out and "perfect separation" in result.out
    assert "nan" not in result.out.lower().replace("note", "")


# ---------------------------------------------------------------- split-plot with unequal arms


def test_generalised_test_matches_a_monte_carlo_of_its_fiducial_distribution():
    """p and interval of d - Z S(U) by quadrature against 2 million draws (MC error ~3e-4)."""
    p_value, low, high = generalised_test(0.1, (0.002, 0.001), (2, 7), 0.0005)
    rng = np.random.default_rng(0)
    n = 2_000_000
    scale = np.sqrt(0.002 * 2 / rng.chisquare(2, n) + 0.001 * 7 / rng.chisquare(7, n) + 0.0005)
    draws = 0.1 - rng.normal(size=n) * scale
    assert p_value == pytest.approx(float(np.mean(2 * (1 - _phi(0.1 / scale)))), abs=1e-3)
    assert (low, high) == pytest.approx(tuple(np.quantile(draws, [0.025, 0.975])), abs=2e-3)


def _phi(x: np.ndarray) -> np.ndarray:
    from scipy import stats

    return stats.norm.cdf(x)


def test_a_split_plot_arm_of_three_readers_uses_the_generalised_test():
    rng = np.random.default_rng(4)
    study = simulate_reader_study(VARIANCE_STRUCTURES["medium"], (3, 8), 60, (0.75, 0.75), rng,
                                  design="split-plot", reader_sd_scale=(3.0, 1.0))
    result = or_analysis(study)
    contrast = result.random.contrasts[0]
    theta = result.theta
    a, b = (theta[i][~np.isnan(theta[i])] for i in range(2))
    case = 2 * max(result.covariances.cov2 - result.covariances.cov3, 0)
    expected = generalised_test(a.mean() - b.mean(), (a.var(ddof=1) / 3, b.var(ddof=1) / 8), (2, 7), case)
    assert (contrast.p_value, contrast.ci_low, contrast.ci_high) == pytest.approx(expected)
    assert result.random.p_value == contrast.p_value
    assert any("generalised (Behrens-Fisher)" in note for note in result.notes)
    with pytest.raises(ReaderStudyError):
        reader_study(pd.DataFrame({"reader": [1], "case": [1], "truth": [1], "rating": [1], "treatment": [1]}),
                     **VAN_DYKE_COLUMNS)


@pytest.mark.slow
def test_type_i_error_of_the_split_plot_test_with_unequal_arms():
    """3 readers against 8, the 3 varying with 3 times the reader SD, 100 cases, medium structure, equal
    expected AUCs: 2,000 Roe-Metz studies reject at 0.05 in [0.03, 0.07] (Monte Carlo SE 0.005). Pooling
    the reader mean squares gave 0.154 here, Satterthwaite's df alone 0.083; measured 2026-12-04: 0.045."""
    rng = np.random.default_rng(20261204)
    rejected = 0
    for _ in range(2000):
        study = simulate_reader_study(VARIANCE_STRUCTURES["medium"], (3, 8), 100, (0.75, 0.75), rng,
                                      design="split-plot", reader_sd_scale=(3.0, 1.0))
        rejected += or_analysis(study).random.p_value < 0.05
    assert 0.03 <= rejected / 2000 <= 0.07, rejected / 2000
