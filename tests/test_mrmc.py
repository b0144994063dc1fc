"""MRMC reader-study analysis: hand-computed fixtures, a published reference, the OR = DBM identity,
bad tables, and (slow) the type I error of the random-reader random-case test by Roe-Metz simulation."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, shared_file
from scipy import stats
from sklearn.metrics import roc_auc_score

from xai_lab.analysis.dbm import dbm_test
from xai_lab.analysis.fom import figures_of_merit
from xai_lab.analysis.mrmc import or_analysis
from xai_lab.analysis.reader_study import ReaderStudyError, reader_study
from xai_lab.analysis.roe_metz import VARIANCE_STRUCTURES, mrmc_power, simulate_reader_study
from xai_lab.study.export import table_file

COLUMNS = {"reader": "reader", "case": "case", "truth": "truth", "score": "score", "modality": "modality"}


def long_table(scores: dict[tuple[str, str], list[float]], truth: list[int]) -> pd.DataFrame:
    """{(modality, reader): scores per case} -> one row per reader x modality x case."""
    return pd.DataFrame([{"modality": m, "reader": r, "case": f"c{k}", "truth": truth[k], "score": s}
                         for (m, r), values in scores.items() for k, s in enumerate(values)])


# A crossed study small enough to follow by hand: 2 modalities, 3 readers, 6 cases (3 abnormal), with ties.
TRUTH = [1, 1, 1, 0, 0, 0]
CROSSED = {("A", "r1"): [5, 4, 2, 2, 1, 3], ("A", "r2"): [4, 4, 3, 1, 2, 2], ("A", "r3"): [5, 3, 3, 3, 1, 1],
           ("B", "r1"): [4, 3, 3, 2, 2, 1], ("B", "r2"): [5, 5, 2, 1, 3, 1], ("B", "r3"): [3, 4, 2, 2, 1, 4]}


def test_hand_fixture_aucs_covariances_and_hillis_test():
    study = reader_study(long_table(CROSSED, TRUTH), **COLUMNS)
    result = or_analysis(study)
    modalities, readers, c = ("A", "B"), ("r1", "r2", "r3"), len(TRUTH)
    # AUCs: scikit-learn's, and the case-deleted AUCs by deleting each case and recomputing
    auc = {key: roc_auc_score(TRUTH, values) for key, values in CROSSED.items()}
    deleted = {key: [roc_auc_score(np.delete(TRUTH, k), np.delete(values, k)) for k in range(c)]
               for key, values in CROSSED.items()}
    for i, m in enumerate(modalities):
        for j, r in enumerate(readers):
            assert result.theta[i, j] == pytest.approx(auc[(m, r)], abs=1e-12)

    def cov(x, y):  # the jackknife covariance, written out
        dx, dy = np.array(x) - np.mean(x), np.array(y) - np.mean(y)
        return (c - 1) / c * float((dx * dy).sum())

    keys = list(CROSSED)
    kinds = {"var": [], "cov1": [], "cov2": [], "cov3": []}
    for (m1, r1), (m2, r2) in itertools.product(keys, keys):
        kind = "var" if (m1, r1) == (m2, r2) else "cov1" if r1 == r2 else "cov2" if m1 == m2 else "cov3"
        kinds[kind].append(cov(deleted[(m1, r1)], deleted[(m2, r2)]))
    expected = {kind: float(np.mean(values)) for kind, values in kinds.items()}
    got = result.covariances
    assert (got.var, got.cov1, got.cov2, got.cov3) == pytest.approx(
        (expected["var"], expected["cov1"], expected["cov2"], expected["cov3"]), abs=1e-12)
    # mean squares and Hillis's F, ddf and p, by the textbook formulas
    theta = np.array([[auc[(m, r)] for r in readers] for m in modalities])
    t, r = theta.shape
    ms_t = r * ((theta.mean(axis=1) - theta.mean()) ** 2).sum() / (t - 1)
    interaction = theta - theta.mean(axis=1, keepdims=True) - theta.mean(axis=0, keepdims=True) + theta.mean()
    ms_tr = (interaction ** 2).sum() / ((t - 1) * (r - 1))
    error = ms_tr + r * max(expected["cov2"] - expected["cov3"], 0)
    F, ddf = ms_t / error, error ** 2 / (ms_tr ** 2 / ((t - 1) * (r - 1)))
    assert result.random.F == pytest.approx(F, rel=1e-10)
    assert result.random.ddf == pytest.approx(ddf, rel=1e-10)
    assert result.random.p_value == pytest.approx(stats.f.sf(F, 1, ddf), rel=1e-10)
    contrast = result.random.contrasts[0]
    se = math.sqrt(2 / r * error)
    assert contrast.se == pytest.approx(se) and contrast.ci_low == pytest.approx(
        theta[0].mean() - theta[1].mean() - stats.t.ppf(0.975, ddf) * se)
    # fixed readers: chi-square on Var - Cov1 + (r-1) max(Cov2 - Cov3, 0)
    x2 = (t - 1) * ms_t / (expected["var"] - expected["cov1"] + (r - 1) * max(expected["cov2"] - expected["cov3"], 0))
    assert result.fixed_readers.F * (t - 1) == pytest.approx(x2) and result.fixed_readers.ddf is None
    assert result.fixed_readers.p_value == pytest.approx(stats.chi2.sf(x2, t - 1))
    # fixed cases: F = MS(T) / MS(T*R)
    assert result.fixed_cases.F == pytest.approx(ms_t / ms_tr) and result.fixed_cases.ddf == (t - 1) * (r - 1)


def test_split_plot_contrast_by_hand_with_unequal_readers():
    """Readers nested in modalities, 3 in A and 2 in B: each modality's reader mean square on its own df,
    Var(D) = MS_A / 3 + MS_B / 2 + 2 max(Cov2 - Cov3, 0), Satterthwaite ddf over the two reader parts."""
    scores = {("A", "a1"): [5, 4, 2, 2, 1, 3], ("A", "a2"): [4, 4, 3, 1, 2, 2], ("A", "a3"): [5, 3, 3, 3, 1, 1],
              ("B", "b1"): [4, 3, 3, 2, 2, 1], ("B", "b2"): [5, 5, 2, 1, 3, 1]}
    study = reader_study(long_table(scores, TRUTH), **COLUMNS)
    assert study.design == "split-plot"
    result = or_analysis(study)
    auc = {key: roc_auc_score(TRUTH, values) for key, values in scores.items()}
    a = [auc[k] for k in scores if k[0] == "A"]
    b = [auc[k] for k in scores if k[0] == "B"]
    ms_within = (np.var(a, ddof=1) * 2 + np.var(b, ddof=1) * 1) / 3
    covariances = result.covariances
    shared = max(covariances.cov2 - covariances.cov3, 0)
    part_a, part_b = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 2
    variance = part_a + part_b + 2 * shared
    ddf = variance ** 2 / (part_a ** 2 / 2 + part_b ** 2 / 1)
    contrast = result.random.contrasts[0]
    assert contrast.estimate == pytest.approx(np.mean(a) - np.mean(b))
    assert contrast.se == pytest.approx(math.sqrt(variance)) and contrast.ddf == pytest.approx(ddf)
    assert covariances.cov1 is None and result.mean_squares["ms_r_within_t"] == pytest.approx(ms_within)


def test_split_plot_with_equal_readers_pools_the_reader_mean_squares():
    """Balanced arms: MS(R(T)) pooled on sum(r_i - 1) df, Hillis's statistic with MS(R(T)) for MS(T*R)."""
    scores = {("A", "a1"): [5, 4, 2, 2, 1, 3], ("A", "a2"): [4, 4, 3, 1, 2, 2],
              ("B", "b1"): [4, 3, 3, 2, 2, 1], ("B", "b2"): [5, 5, 2, 1, 3, 1]}
    result = or_analysis(reader_study(long_table(scores, TRUTH), **COLUMNS))
    auc = {key: roc_auc_score(TRUTH, values) for key, values in scores.items()}
    a, b = ([auc[k] for k in scores if k[0] == arm] for arm in "AB")
    pooled = (np.var(a, ddof=1) + np.var(b, ddof=1)) / 2
    shared = max(result.covariances.cov2 - result.covariances.cov3, 0)
    reader_part = pooled * (1 / 2 + 1 / 2)
    contrast = result.random.contrasts[0]
    assert contrast.se == pytest.approx(math.sqrt(reader_part + 2 * shared))
    assert contrast.ddf == pytest.approx((reader_part + 2 * shared) ** 2 / (reader_part ** 2 / 2))


def test_sensitivity_and_specificity_of_binary_calls():
    calls = {("A", "r1"): [1, 1, 0, 0, 1, 0], ("A", "r2"): [1, 0, 1, 0, 0, 0],
             ("B", "r1"): [1, 1, 1, 1, 0, 0], ("B", "r2"): [0, 1, 1, 0, 0, 1]}
    study = reader_study(long_table(calls, TRUTH), **COLUMNS)
    theta, deleted = figures_of_merit(study, "sensitivity")
    assert theta[0, 0] == pytest.approx(2 / 3) and theta[1, 0] == pytest.approx(1.0)
    assert deleted[0, 0, 0] == pytest.approx(1 / 2)  # deleting a detected abnormal case: 1 of 2 left
    assert deleted.shape[2] == 3  # only the abnormal cases are jackknifed: normal ones do not enter sensitivity
    theta, _ = figures_of_merit(study, "specificity")
    assert theta[0, 0] == pytest.approx(2 / 3) and theta[1, 1] == pytest.approx(2 / 3)
    assert or_analysis(study, "specificity").fom == "specificity"
    with pytest.raises(ReaderStudyError, match="need the reader's call"):
        figures_of_merit(reader_study(long_table(CROSSED, TRUTH), **COLUMNS), "sensitivity")


def identity_datasets() -> dict[str, pd.DataFrame | object]:
    rng = np.random.default_rng(11)
    return {"hand crossed": reader_study(long_table(CROSSED, TRUTH), **COLUMNS),
            "roe-metz crossed, 3 modalities": simulate_reader_study(VARIANCE_STRUCTURES["high"], 5, 40,
                                                                   (0.75, 0.8, 0.78), rng),
            "roe-metz crossed, 2 modalities": simulate_reader_study(VARIANCE_STRUCTURES["medium"], 6, 60,
                                                                   (0.8, 0.82), rng),
            "roe-metz split-plot": simulate_reader_study(VARIANCE_STRUCTURES["high"], 4, 50, (0.75, 0.8), rng,
                                                         design="split-plot"),
            "roe-metz split-plot, 3 modalities": simulate_reader_study(VARIANCE_STRUCTURES["low"], 3, 30,
                                                                       (0.7, 0.75, 0.8), rng, design="split-plot")}


@pytest.mark.parametrize("name", list(identity_datasets()))
def test_or_with_jackknife_equals_dbm_with_normalised_pseudovalues(name):
    """Hillis et al. (2005): the two methods give the same F and ddf; two independent codes must agree."""
    study = identity_datasets()[name]
    result, dbm = or_analysis(study), dbm_test(study)
    assert abs(result.random.F - dbm.F) < 1e-9 * max(1.0, dbm.F)
    assert abs(result.random.ddf - dbm.ddf) < 1e-9 * max(1.0, dbm.ddf)
    assert abs(result.random.p_value - dbm.p_value) < 1e-9


def test_published_or_analysis_of_franken_is_reproduced():
    """Franken et al. (1992) through OR-DBM MRMC 2.51 (Schartz, Hillis, Pesce & Berbaum; trapezoidal AUC,
    jackknife covariances), output file 'Franken1 trap area jackknife anova.txt' as distributed with the
    RJafroc package's tests (tests/testthat/goodValues361/Iowa/Franken1.txt). Numbers copied from it."""
    frame = pd.read_csv(shared_file("franken_mrmc.csv"))
    study = reader_study(frame, reader="reader", case="case", truth="truth", score="rating", modality="treatment")
    result = or_analysis(study)
    assert (result.n_cases, result.n_abnormal, study.design) == (100, 67, "crossed")
    published_aucs = [[0.85345997, 0.86499322, 0.85730439, 0.81524197],
                      [0.84961556, 0.84350972, 0.84011759, 0.81433740]]
    assert result.theta == pytest.approx(np.array(published_aucs), abs=5e-9)
    squares, cov = result.mean_squares, result.covariances
    assert (squares["ms_t"], squares["ms_r"], squares["ms_tr"]) == pytest.approx((0.00023565, 0.00068406, 0.00005020),
                                                                              abs=5e-9)
    assert (cov.var, cov.cov1, cov.cov2, cov.cov3) == pytest.approx((0.00152578, 0.00079168, 0.00048364, 0.00051251),
                                                                    abs=5e-9)
    assert result.variance_components["var_r"] == pytest.approx(0.00003776, abs=5e-9)
    assert result.variance_components["var_tr"] == pytest.approx(-0.00071276, abs=5e-9)
    # Analysis 1: random readers and cases
    random = result.random
    assert (round(random.F, 2), round(random.ddf, 2), round(random.p_value, 4)) == (4.69, 3.00, 0.1188)
    contrast = random.contrasts[0]
    assert (round(contrast.estimate, 5), round(contrast.se, 5)) == (0.01085, 0.00501)
    assert (round(contrast.ci_low, 5), round(contrast.ci_high, 5)) == (-0.00509, 0.02680)
    singles = [(round(e.se, 8), round(e.df, 2), round(e.ci_low, 8), round(e.ci_high, 8)) for e in random.modalities]
    assert singles == [(0.02440215, 70.12, 0.79908282, 0.89641696), (0.02356642, 253.64, 0.79048429, 0.88330585)]
    assert [round(c, 8) for c in cov.cov2_by_modality] == [0.00047230, 0.00049498]
    # Analysis 2: fixed readers (chi-square)
    fixed = result.fixed_readers
    assert (round(fixed.F * fixed.ndf, 5), round(fixed.p_value, 4)) == (0.32101, 0.5710)
    assert (round(fixed.contrasts[0].se, 5), round(fixed.contrasts[0].ci_low, 5)) == (0.01916, -0.02670)
    assert [(round(e.se, 8), round(e.ci_low, 8)) for e in fixed.modalities] == [(0.02710939, 0.79461647),
                                                                                (0.02744860, 0.78309680)]
    # Analysis 3: fixed cases
    cases = result.fixed_cases
    assert (round(cases.F, 2), cases.ddf, round(cases.p_value, 4)) == (4.69, 3, 0.1188)
    assert [(round(e.se, 8), round(e.ci_low, 8)) for e in cases.modalities] == [(0.01109801, 0.81243106),
                                                                                (0.00777173, 0.81216196)]


def test_cli_json_contract(tmp_path):
    path = tmp_path / "study.csv"
    long_table(CROSSED, TRUTH).rename(columns={"modality": "condition"}).to_csv(path, index=False)
    result = run_cli("mrmc", path, "--reader", "reader", "--case", "case", "--truth", "truth", "--score", "score",
                     "--modality", "condition", "--json", "--out", tmp_path / "out")
    assert result.code == 0, result.err
    answer = json.loads(result.out.strip().splitlines()[-1])
    assert answer["method"] == "OR" and answer["fom"] == "auc" and answer["design"] == "crossed"
    assert (answer["n_readers"], answer["n_cases"]) == (3, 6) and set(answer["modalities"]) == {"A", "B"}
    assert set(answer["modalities"]["A"]) >= {"auc", "ci_low", "ci_high"}
    assert set(answer["contrasts"][0]) >= {"a", "b", "estimate", "ci_low", "ci_high", "F", "ndf", "ddf", "p_value"}
    assert set(answer["variance_components"]) >= {"var", "cov1", "cov2", "cov3", "ms_t", "ms_tr"}
    assert {"fixed_readers", "fixed_cases"} <= set(answer)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"mrmc.json", "reader_foms.csv", "contrasts.csv",
                                                              "roc.png"}


def bad(frame: pd.DataFrame, tmp_path, *extra: str):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return run_cli("mrmc", path, "--reader", "reader", "--case", "case", "--truth", "truth", "--score", "score",
                   "--modality", "modality", *extra)


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.drop(columns="truth"), "no column --truth 'truth'"),
    (lambda f: f[f["modality"] == "A"], "one modality"),
    (lambda f: f.assign(truth=f["truth"].where(f["case"] != "c2")), "rows have no truth"),
    (lambda f: f.assign(score=f["score"].astype(object).where(f["case"] != "c1", "high")), "are not numbers"),
    (lambda f: f[~((f["reader"] == "r2") & (f["modality"] == "B") & (f["case"] == "c4"))],
     "reader r2 in modality B lacks 1 of 6 cases"),
    (lambda f: f[~((f["reader"] == "r3") & (f["modality"] == "B"))], "reader r3 has no scores in modality B"),
    (lambda f: pd.concat([f, f.iloc[:1]]), "repeat a reader x modality x case"),
    (lambda f: f.assign(truth=f["truth"].map({0: "no", 1: "yes"})), "say which value means abnormal with --positive"),
])
def test_bad_tables_are_one_line_errors(tmp_path, edit, message):
    result = bad(edit(long_table(CROSSED, TRUTH)), tmp_path)
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1, result.err


def test_positive_value_and_lower_is_positive(tmp_path):
    table = long_table(CROSSED, TRUTH).assign(truth=lambda f: f["truth"].map({0: "no", 1: "yes"}))
    assert bad(table, tmp_path, "--positive", "yes").code == 0
    flipped = bad(long_table(CROSSED, TRUTH).assign(score=lambda f: -f["score"]), tmp_path, "--lower-is-positive",
                  "--json")
    original = bad(long_table(CROSSED, TRUTH), tmp_path, "--json")
    flipped_f, original_f = (json.loads(r.out.splitlines()[-1])["F"] for r in (flipped, original))
    assert flipped_f == pytest.approx(original_f)


def test_mrmc_power_command_writes_table_and_plot(tmp_path):
    result = run_cli("power", "--mrmc", "--delta-auc", "0.1", "--readers", "3", "--cases", "30,60", "--reps", "20",
                     "--out", tmp_path)
    assert result.code == 0, result.err
    table = pd.read_csv(tmp_path / "mrmc_power.csv")
    assert list(table["cases"]) == [30, 60] and table["power"].between(0, 1).all()
    assert (tmp_path / "mrmc_power.png").stat().st_size > 1000
    assert run_cli("power", "--mrmc", "--variance", "1,2,3", "--out", tmp_path).code == 2


@pytest.mark.slow
@pytest.mark.parametrize("design", ["crossed", "split-plot"])
def test_type_i_error_of_the_random_reader_random_case_test(design):
    """2,000 null Roe-Metz studies (5 readers per condition, 100 cases, medium structure): the rejection
    rate at alpha 0.05 lies in [0.035, 0.065] (its Monte Carlo SE is about 0.005)."""
    table = mrmc_power(VARIANCE_STRUCTURES["medium"], 0.0, [5], [100], reps=2000, design=design, seed=20261201)
    rate = float(table["power"].iloc[0])
    assert 0.035 <= rate <= 0.065, rate


# ---------------------------------------------------------------- study data: the score a ROC needs


def test_the_probability_question_records_scores_and_confidence(study_home, tmp_path, monkeypatch):
    from conftest import use_lab, write_study

    from xai_lab.study.cases import load_case_set
    from xai_lab.study.design_file import load_design
    from xai_lab.study.export import export_study
    from xai_lab.study.service import StudyService

    use_lab(study_home, monkeypatch)
    path = write_study(tmp_path, study_id="prob", arms='["verify"]', blocks="[1, 2]")
    path.write_text(path.read_text() + '\n[trials]\nscore = "probability"\n')
    assert run_cli("study", "prepare", str(path)).code == 0
    design = load_design(path)
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{tmp_path}/prob.db")
    token = service.enrol()
    step = service.resume(token)
    while not step.key.startswith("trial:0"):
        answer = {"agree": True} if step.kind == "consent" else {}
        if step.kind == "profile":
            answer = {name: options[0] for name, options in step.content["fields"].items()}
        if step.kind in ("practice",):
            answer = {"label": "normal", "probability": 30, "slider_moved": True}
        step = service.submit(token, step.key, answer, f"k-{step.key}")
    assert step.content["question"] == "probability" and step.content["positive_label"] == "lesion"
    with pytest.raises(Exception, match="probability must be a whole number"):
        service.submit(token, step.key, {"label": "normal", "confidence": 70, "slider_moved": True}, "wrong-field")
    step = service.submit(token, step.key, {"label": "normal", "probability": 20, "slider_moved": True},
                          "initial")  # 80% sure: normal
    assert step.content["initial"] == {"label": "normal", "confidence": 80, "score": 20}
    service.submit(token, step.key, {"label": "lesion", "probability": 65, "slider_moved": True}, "final")
    export_study(service.engine, "prob", tmp_path / "export")
    row = pd.read_csv(table_file(tmp_path / "export", "trials")).iloc[0]
    assert (row["initial_score"], row["initial_confidence"], row["final_score"], row["final_confidence"]) == \
        (20, 80, 65, 65)
    assert row["score_class"] == "lesion"
    assert "slider asked how likely the case shows `lesion`" in (tmp_path / "export" / "codebook.md").read_text()


def test_the_confidence_question_exports_scores_as_probabilities(study_home, tmp_path, monkeypatch):
    from conftest import use_lab

    from xai_lab.study.cases import load_case_set
    from xai_lab.study.design_file import load_design
    from xai_lab.study.export import export_study
    from xai_lab.study.service import StudyService
    from xai_lab.study.simulate import SimulationConfig, simulate

    use_lab(study_home, monkeypatch)
    design = load_design(study_home / "t.toml")
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{tmp_path}/conf.db")
    simulate(service, SimulationConfig(participants=6, seed=4, dropout=0.0))
    export_study(service.engine, "t", tmp_path / "export")
    trials = pd.read_csv(table_file(tmp_path / "export", "trials"))
    lesion = trials["final_label"] == "lesion"
    assert (trials.loc[lesion, "final_score"] == trials.loc[lesion, "final_confidence"]).all()
    assert (trials.loc[~lesion, "final_score"] == 100 - trials.loc[~lesion, "final_confidence"]).all()
    verify = trials[trials["arm"] == "verify"]
    assert verify["initial_score"].notna().all() and trials.loc[trials["arm"] != "verify", "initial_score"].isna().all()


def test_the_trial_screen_asks_the_probability_when_the_design_says_so(study_home, tmp_path, monkeypatch):
    import streamlit as st
    from conftest import REPO_ROOT, use_lab, write_study
    from streamlit.testing.v1 import AppTest

    from xai_lab.store.database import open_database
    from xai_lab.study.access import enrolment_code
    from xai_lab.ui import registry

    use_lab(study_home, monkeypatch)
    path = write_study(study_home, study_id="probui", arms='["rely"]', blocks="[1, 2]")
    path.write_text(path.read_text() + '\n[trials]\nscore = "probability"\n')
    assert run_cli("study", "prepare", str(path)).code == 0
    monkeypatch.setenv("XAI_LAB_STUDIES", path.stem)
    monkeypatch.delenv("XAI_LAB_DATABASE_URL", raising=False)
    registry.close_all()
    st.cache_data.clear()
    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=60)
    app.query_params.update(study="probui", code=enrolment_code(open_database(), "probui"))
    app.run()
    app.button(key="agree:consent").click().run()
    for box in app.selectbox:
        box.select(box.options[0]).run()
    app.button(key="go:profile").click().run()
    app.button(key="go:instructions:rely").click().run()
    slider = app.slider[0]
    assert slider.label.startswith("How likely is it that this image shows lesion?")
    slider.set_value(35).run()
    app.button(key=f"decide:{slider.key.split(':', 1)[1]}:normal").click().run()  # the practice case
    assert not app.exception, app.exception
    registry.close_all()
