"""Conditions as factors: declaring them, their schedules, what each trial shows and records, bad input."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO_ROOT, run_cli, use_lab

from xai_lab.errors import ConfigError
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.export import export_study, table_file
from xai_lab.study.factors import Factor, allocation_units, trial_schedule
from xai_lab.study.registration import rebuild_derived
from xai_lab.study.service import NotCurrentStep, StudyService
from xai_lab.study.simulate import SimulationConfig, simulate

SHIPPED_2X2 = REPO_ROOT / "studies" / "explanation_2x2.toml"


def on_tiny(text: str) -> str:
    """A shipped design moved onto the test session's small dataset and model."""
    start = text.index("[data]")
    end = text.index("[", start + 1)
    return text[:start] + '[data]\ndataset = "tiny"\nmodel = "tiny"\n\n' + text[end:]


def write_design(home: Path, text: str, name: str = "f.toml") -> Path:
    path = home / name
    path.write_text(text)
    return path


def prepared_service(home: Path, path: Path) -> StudyService:
    result = run_cli("study", "prepare", str(path))
    assert result.code == 0, result.err
    design = load_design(path)
    return StudyService.open(design, load_case_set(design), url=f"sqlite:///{home}/{uuid.uuid4().hex}.db")


@pytest.fixture
def in_home(study_home, monkeypatch):
    return use_lab(study_home, monkeypatch)


# ---------------------------------------------------------------- schedules (pure)

WITHIN = Factor(name="explanation", sets="explanation", vary="within", levels=("none", "contour"))
BETWEEN = Factor(name="workflow", sets="workflow", vary="between", levels=("verify", "rely"))


def test_units_cross_between_cells_with_within_rotations():
    assert allocation_units((BETWEEN, WITHIN)) == ("verify@0", "verify@1", "rely@0", "rely@1")
    assert allocation_units((BETWEEN,)) == ("verify", "rely")
    assert allocation_units((WITHIN,)) == ("all@0", "all@1")


@pytest.mark.parametrize("n", [8, 9, 15])
def test_a_rotation_gives_each_level_on_half_the_cases_and_each_case_each_level(n):
    shuffled = list(range(n))[::-1]
    seen = {}
    for rotation in (0, 1):
        schedule = trial_schedule((BETWEEN, WITHIN), f"rely@{rotation}", n, shuffled)
        assert [case for case, _ in schedule] == shuffled  # interleaved: the participant's own order
        counts = Counter(levels["explanation"] for _, levels in schedule)
        assert abs(counts["none"] - n / 2) <= 1 and abs(counts["contour"] - n / 2) <= 1
        assert all(levels["workflow"] == "rely" for _, levels in schedule)
        for case, levels in schedule:
            seen.setdefault(case, set()).add(levels["explanation"])
    assert all(levels == {"none", "contour"} for levels in seen.values())  # the two rotations complement


def test_blocks_read_each_level_in_one_run_in_rotated_order():
    blocked = Factor(name="explanation", sets="explanation", vary="within", levels=("none", "contour"),
                     schedule="blocks")
    first = [levels["explanation"] for _, levels in trial_schedule((blocked,), "all@0", 8, list(range(8)))]
    second = [levels["explanation"] for _, levels in trial_schedule((blocked,), "all@1", 8, list(range(8)))]
    assert first == ["none"] * 4 + ["contour"] * 4
    assert second == ["contour"] * 4 + ["none"] * 4


# ---------------------------------------------------------------- the shipped 2 x 2, simulated

@pytest.mark.slow  # 200 participants through the real service: a minute on this 2-core machine
def test_explanation_2x2_simulated_balanced_recorded_and_exported(in_home, tmp_path):
    path = write_design(in_home, on_tiny(SHIPPED_2X2.read_text()), "explanation_2x2.toml")
    service = prepared_service(in_home, path)
    summary = simulate(service, SimulationConfig(participants=200, seed=5, dropout=0.0, concurrency=4))
    assert summary.completed == 200
    export_study(service.engine, "explanation_2x2", tmp_path / "out")
    trials = pd.read_csv(table_file(tmp_path / "out", "trials"))
    n = service.design.cases.n
    assert {"factor_workflow", "factor_explanation"} <= set(trials.columns)
    per_person = trials.groupby(["participant_id", "factor_explanation"]).size().unstack()
    assert ((per_person - n / 2).abs() <= 1).all().all()
    # each case with and without the map to 50% +- 5% of participants (exactly half: 200 fills whole blocks)
    share = trials.assign(mapped=trials["factor_explanation"] == "contour").groupby("case_id")["mapped"].mean()
    assert share.between(0.45, 0.55).all(), share.describe()
    # what the screen showed follows the level: no map at none; at contour the map unless withheld
    assert not trials.loc[trials["factor_explanation"] == "none", "overlay_shown"].astype(bool).any()
    assert trials.loc[trials["factor_explanation"] == "contour", "overlay_look"].dropna().eq("contour").all()
    assert trials["arm"].eq(trials["factor_workflow"]).all()
    assert trials["advice_label"].eq("AI").all()
    design = (tmp_path / "out" / "design.json").read_text()
    assert '"factors"' in design and '"explanation"' in design
    # the analysis follows the design: the report opens with the declared factor contrast
    result = run_cli("analyze", str(tmp_path / "out"), "--out", str(tmp_path / "report"), "--rehearsal",
                     "--resamples", "100", "--no-mixed")
    assert result.code == 0, result.err
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    primary = summary["estimands"]["primary"]
    assert (primary["metric"], primary["a"], primary["b"]) == ("over_reliance", "explanation=contour",
                                                               "explanation=none")
    assert primary["n_a"] == 200 and "paired within participants" in primary["method"]
    assert [r["metric"] for r in summary["estimands"]["interactions"]] == ["over_reliance"]
    report = (tmp_path / "report" / "report.html").read_text()
    first = report.index("Primary estimand")
    assert report.index("over-reliance", first) < report.index("Interactions") \
        and "explanation=contour - explanation=none" in report[first:first + 2000]


def test_the_plan_survives_resume_and_rebuild(in_home):
    path = write_design(in_home, on_tiny(SHIPPED_2X2.read_text()), "explanation_2x2.toml")
    service = prepared_service(in_home, path)
    simulate(service, SimulationConfig(participants=8, seed=2, dropout=0.5))
    with service.engine.connect() as connection:
        before = connection.exec_driver_sql("SELECT participant_id, arm, plan, step_key FROM participants "
                                            "ORDER BY participant_id").all()
        rows_before = connection.exec_driver_sql("SELECT * FROM trials ORDER BY participant_id, trial_index").all()
    rebuild_derived(service.engine, service.design.id)
    with service.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT participant_id, arm, plan, step_key FROM participants "
                                          "ORDER BY participant_id").all() == before
        assert connection.exec_driver_sql("SELECT * FROM trials ORDER BY participant_id, "
                                          "trial_index").all() == rows_before


# ---------------------------------------------------------------- source label, confidence, on demand

SOURCE_FACTOR = '''
[factors.source]
vary = "within"
levels = ["ai", "radiologist"]

[factors.source.labels]
ai = "AI"
radiologist = "a senior radiologist"
'''
SCREEN_FACTORS = SOURCE_FACTOR + '''
[factors.confidence]
vary = "between"
levels = ["verbal", "none"]
'''


def factor_study(study_id: str, arms: str, factors: str, n: int = 8) -> str:
    template = on_tiny(SHIPPED_2X2.read_text())
    head, _, rest = template.partition("[factors.workflow]")
    rest = rest[rest.index("[data]"):]
    head = head.replace('id = "explanation_2x2"', f'id = "{study_id}"')
    head = head.replace("[instructions]", f"arms = {arms}\n\n[instructions]")
    instructions = "[instructions]\n" + "\n".join(f'{arm} = "Read each image."' for arm in eval(arms)) + "\n"
    head = head[:head.index("[instructions]")] + instructions
    text = head + factors + "\n" + rest
    text = text.replace("n = 16", f"n = {n}").replace("block_sizes = [4, 8]", "block_sizes = [4]")
    return text[:text.index("[analysis]")]


def test_source_label_and_verbal_confidence_reach_the_screen_and_the_record(in_home, tmp_path):
    path = write_design(in_home, factor_study("sources", '["rely"]', SCREEN_FACTORS))
    service = prepared_service(in_home, path)
    simulate(service, SimulationConfig(participants=8, seed=1, dropout=0.0))
    export_study(service.engine, "sources", tmp_path / "out")
    trials = pd.read_csv(table_file(tmp_path / "out", "trials"))
    labels = dict(zip(trials["factor_source"], trials["advice_label"], strict=True))
    assert labels == {"ai": "AI", "radiologist": "a senior radiologist"}
    assert (trials["confidence_display"] == trials["factor_confidence"]).all()
    token = service.enrol()
    step = service.resume(token)
    from test_study import walk_to  # the careful reader of the engine tests
    step = walk_to(service, token, "trial")
    ai = step.content["ai"]
    assert ai["source"] in ("AI", "a senior radiologist") and ai["display"] in ("verbal", "none")
    assert (ai["confidence"] is None) == (ai["display"] == "none")


def test_on_demand_shows_the_ai_only_after_the_request_and_records_it(in_home, tmp_path):
    path = write_design(in_home, factor_study("asks", '["on_demand"]', '''
[factors.explanation]
vary = "within"
levels = ["none", "heatmap"]
'''))
    service = prepared_service(in_home, path)
    simulate(service, SimulationConfig(participants=6, seed=3, dropout=0.0, ask_ai=0.5))
    from test_study import walk_to
    token = service.enrol()
    step = walk_to(service, token, "trial")
    assert step.content["on_demand"] and not step.content["ai_requested"] and "ai" not in step.content
    asked = service.request_ai(token, step.key, uuid.uuid4().hex)
    assert asked.key == step.key and asked.content["ai_requested"] and asked.content["ai"]["label"]
    again = service.request_ai(token, step.key, uuid.uuid4().hex)  # a second click changes nothing
    assert again.content == asked.content
    export_study(service.engine, "asks", tmp_path / "out")
    trials = pd.read_csv(table_file(tmp_path / "out", "trials"))
    assert set(trials["arm"]) == {"on_demand"}
    asked_rows = trials[trials["ai_requested"].astype(bool)]
    unasked = trials[~trials["ai_requested"].astype(bool)]
    assert len(asked_rows) and len(unasked)
    assert asked_rows["ai_label"].notna().all() and asked_rows["rt_ai_request_ms"].ge(0).all()
    assert unasked["ai_label"].isna().all() and unasked["rt_ai_request_ms"].isna().all()


def test_the_ai_cannot_be_requested_where_it_is_not_offered(in_home):
    path = write_design(in_home, on_tiny(SHIPPED_2X2.read_text()), "explanation_2x2.toml")
    service = prepared_service(in_home, path)
    from test_study import walk_to
    token = service.enrol()
    step = walk_to(service, token, "trial")
    with pytest.raises(NotCurrentStep, match="does not offer the AI on request"):
        service.request_ai(token, step.key, uuid.uuid4().hex)


# ---------------------------------------------------------------- bad input: one line, nothing registered

def edited(old: str, new: str) -> str:
    text = on_tiny(SHIPPED_2X2.read_text())
    assert old in text
    return text.replace(old, new)


BAD_FACTORS = [
    (edited('levels = ["none", "contour"]', 'levels = ["none", "contour", "heatmap", "side_by_side"]')
     .replace("n = 16", "n = 3").replace("[4, 8]", "[8]"), "cases.n (3) is fewer than the 4 within-participant cells"),
    (edited('levels = ["none", "contour"]', 'levels = ["none", "sparkles"]'),
     "factors.explanation.levels lists 'sparkles', which a explanation factor cannot show"),
    (edited('levels = ["verify", "rely"]', 'levels = ["verify", "trust"]'),
     "lists 'trust', which a workflow factor cannot show: workflow levels are verify, rely, control, on_demand"),
    (edited('contrast = "contour - none"', 'contrast = "contour - verify"'),
     "names a level of factor 'workflow', not of 'explanation'"),
    (edited('factor = "explanation"', 'factor = "advice"'), "analysis.factor is 'advice', not a factor"),
    (edited('factor = "explanation"\n', ''), "analysis.factor is missing"),
    (edited('[instructions]', 'arms = ["verify"]\n\n[instructions]'), "arms is set by factor 'workflow'"),
    (edited('[explanation]\n', '[explanation]\nlook = { verify = "heatmap" }\n'),
     "explanation.look is decided by factor 'explanation'"),
    (edited('vary = "between"', 'vary = "within"'), "within is not offered for workflow factors yet"),
    (edited('block_sizes = [4, 8]', 'block_sizes = [2, 4]'), "must list 1-8 multiples of 4 (the number of between"),
    (edited('schedule = "interleaved"', 'schedule = "sometimes"'), "factors.explanation.schedule must be one of"),
    (edited('factor = "explanation"\ncontrast = "contour - none"', 'interaction = "explanation x model"'),
     "analysis.interaction names 'model', which is not a factor of the design"),
    (edited('factor = "explanation"\n', 'interaction = "explanation x workflow"\n'),
     "analysis.contrast cannot be set with interaction"),
]


@pytest.mark.parametrize("text, message", BAD_FACTORS, ids=[m[:40] for _, m in BAD_FACTORS])
def test_bad_factor_designs_are_refused_in_one_line_with_exit_2(in_home, text, message):
    path = write_design(in_home, text, "bad.toml")
    with pytest.raises(ConfigError, match=None) as error:
        load_design(path)
    assert message in str(error.value) and "\n" not in str(error.value)
    result = run_cli("study", "validate", str(path))
    assert result.code == 2 and message in result.err
    result = run_cli("study", "prepare", str(path))  # nothing prepared, nothing registered
    assert result.code == 2 and message in result.err


# ---------------------------------------------------------------- advice model and whose map

BIASED_FACTORS = '''
[factors.model]
sets = "advice_model"
vary = "within"
levels = ["standard", "biased"]

[factors.model.models]
standard = "tiny"
biased = "tiny_inverted"

[factors.explanation]
vary = "between"
levels = ["own", "sham", "other"]

[factors.explanation.looks]
own = "heatmap"
sham = "heatmap"
other = "heatmap"

[factors.explanation.maps]
sham = "randomised"
other = "model:tiny_inverted"
'''


@pytest.fixture(scope="module")
def with_biased_model(study_home):
    """A second model on the same images whose shortcut is inverted (the corner marker on normal images
    in its training data): on the study's images it is systematically wrong, like Jabbour's biased model."""
    with pytest.MonkeyPatch.context() as patch:
        use_lab(study_home, patch)
        assert run_cli("data", "synth", "--name", "tiny_inv", "--n", "200", "--size", "32", "--seed", "4",
                       "--shortcut", "0.0").code == 0
        result = run_cli("train", "--data", "tiny_inv", "--out", str(study_home / "models" / "tiny_inverted"),
                         "--epochs", "3", "--members", "1", "--batch-size", "64", "--quiet")
        assert result.code == 0, result.err
    return study_home


def test_a_second_model_advises_on_its_level_with_its_own_and_other_maps(with_biased_model, in_home, tmp_path):
    path = write_design(in_home, factor_study("biased", '["rely"]', BIASED_FACTORS, n=8)
                        .replace("block_sizes = [4]", "block_sizes = [6]"))
    service = prepared_service(in_home, path)
    case_set = service.case_set
    assert set(case_set.advice_by_model) == {"tiny_inverted"}
    simulate(service, SimulationConfig(participants=12, seed=4, dropout=0.0))
    export_study(service.engine, "biased", tmp_path / "out")
    trials = pd.read_csv(table_file(tmp_path / "out", "trials"))
    by_level = trials.groupby("factor_model")["advice_model"].unique()
    assert list(by_level["standard"]) == ["tiny"] and list(by_level["biased"]) == ["tiny_inverted"]
    accuracy = trials.assign(right=trials["ai_label"] == trials["true_label"]).groupby("factor_model")["right"].mean()
    assert accuracy["biased"] < accuracy["standard"] - 0.3, accuracy  # the inverted shortcut misleads
    biased = trials[trials["factor_model"] == "biased"]
    expected = {case.case_id: case.ai_label for case in case_set.advice_by_model["tiny_inverted"].values()}
    assert (biased["ai_label"] == biased["case_id"].map(expected)).all()
    shown = trials[trials["overlay_shown"].astype(bool)]
    assert dict(shown.groupby("factor_explanation")["map_source"].first()) == \
        {"own": "model", "sham": "randomised", "other": "model:tiny_inverted"}
    # every map a trial can show was precomputed, and the three sources differ
    from xai_lab.study.media import StudyMedia
    media = StudyMedia.open(case_set)
    case = case_set.cases[0]
    layers = {(model, source): media.layer_png(case.case_id, "heatmap", model, source)
              for model in ("tiny", "tiny_inverted") for source in ("model", "randomised", "model:tiny_inverted")}
    assert all(layer is not None for layer in layers.values())
    assert len({layers[("tiny", s)] for s in ("model", "randomised", "model:tiny_inverted")}) == 3


def test_a_factor_naming_a_missing_model_is_refused_at_prepare(in_home):
    text = factor_study("nomodel", '["rely"]', BIASED_FACTORS.replace('biased = "tiny_inverted"',
                                                                     'biased = "no_such_model"'), n=8)
    path = write_design(in_home, text.replace("block_sizes = [4]", "block_sizes = [6]"))
    result = run_cli("study", "prepare", str(path))
    assert result.code == 2 and "name model 'no_such_model', which does not exist" in result.err


def test_the_shipped_biased_ai_design_runs_on_a_biased_model(with_biased_model, in_home, tmp_path):
    text = on_tiny((REPO_ROOT / "studies" / "biased_ai.toml").read_text())
    text = text.replace('standard = "synthetic"', 'standard = "tiny"').replace('biased = "synthetic_biased"',
                                                                              'biased = "tiny_inverted"')
    service = prepared_service(in_home, write_design(in_home, text, "biased_ai.toml"))
    simulate(service, SimulationConfig(participants=16, seed=6, dropout=0.0))
    export_study(service.engine, "biased_ai", tmp_path / "out")
    trials = pd.read_csv(table_file(tmp_path / "out", "trials"))
    cells = trials.groupby(["participant_id", "factor_model", "factor_explanation"]).size()
    assert (cells == service.design.cases.n // 4).all()  # each participant: 4 cases in each of the 4 conditions
    result = run_cli("analyze", str(tmp_path / "out"), "--out", str(tmp_path / "report"), "--rehearsal",
                     "--resamples", "100", "--no-mixed")
    assert result.code == 0, result.err
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    primary = summary["estimands"]["primary"]
    assert (primary["a"], primary["b"]) == ("model=biased", "model=standard") and primary["estimate"] < 0


def test_power_of_a_factorial_design_runs_its_factor_contrast():
    from xai_lab.analysis.power import parse_effects, power_table

    design = load_design(SHIPPED_2X2)
    strong = parse_effects(["over_reliance:explanation.contour=0.25,explanation.none=0.80"])
    table = power_table(design, strong, [20], reps=12, workers=1)
    primary = table[table["contrast"].str.startswith("primary")].iloc[0]
    assert primary["contrast"] == "primary: over_reliance explanation=contour - explanation=none"
    assert primary["power"] >= 0.9 and primary["reps"] >= 10  # a replicate without variation has no p
    null = power_table(design, parse_effects(["over_reliance:explanation.contour=0.45,explanation.none=0.45"]),
                       [20], reps=12, workers=1)
    assert null.loc[null["contrast"].str.startswith("primary"), "power"].iloc[0] <= 0.25


def test_a_declared_interaction_is_the_primary_estimand(tmp_path):
    from xai_lab.study.design_file import parse_design
    from xai_lab.study.planted import PlantedEffects, simulate_export

    text = SHIPPED_2X2.read_text().replace('factor = "explanation"\ncontrast = "contour - none"',
                                           'interaction = "explanation x workflow"')
    import tomllib
    design = parse_design(tomllib.loads(text), "interaction.toml")
    assert design.analysis.interaction == ("explanation", "workflow")
    export = simulate_export(design, PlantedEffects(over_reliance={"verify": 0.3, "rely": 0.5}), 20, seed=2)
    export.write(tmp_path / "export")
    (tmp_path / "export" / "design.json").write_text(json.dumps(design.to_json()))
    result = run_cli("analyze", str(tmp_path / "export"), "--out", str(tmp_path / "report"), "--resamples", "100",
                     "--no-mixed")
    assert result.code == 0, result.err
    primary = json.loads((tmp_path / "report" / "summary.json").read_text())["estimands"]["primary"]
    assert primary["a"] == "(explanation=none - contour) at workflow=verify" and primary["p_value"] is not None
    assert "interaction" in primary["method"]


def test_planted_effects_per_level_and_per_combination_of_levels():
    from xai_lab.study.planted import PlantedEffects

    # the map lowers over-reliance only with the faithful (standard) model: an interaction
    effects = PlantedEffects(over_reliance={"rely": 0.45, "explanation.contour": 0.45,
                                            "explanation.contour&model.standard": 0.25})
    def over(**levels):
        take_wrong, _ = effects.switch_probabilities("rely", 1, levels)
        return round(take_wrong * effects.skill + (1 - effects.skill), 6)  # back to P(final = AI | AI wrong)
    assert over(explanation="contour", model="standard") == 0.25
    assert over(explanation="contour", model="biased") == 0.45
    assert over(explanation="none", model="standard") == 0.45


def test_a_planted_effect_at_an_unknown_level_is_refused(in_home):
    path = write_design(in_home, on_tiny(SHIPPED_2X2.read_text()), "explanation_2x2.toml")
    assert run_cli("study", "prepare", str(path)).code == 0
    result = run_cli("simulate", "--design", str(path), "--participants", "2", "--database",
                     f"sqlite:///{in_home}/{uuid.uuid4().hex}.db", "--reliance-at", "explanaton=contour:0.4")
    assert result.code == 2 and "explanaton=contour, which is not a level" in result.err
    assert "explanation=contour" in result.err


def test_roc_per_between_condition_when_the_between_factors_are_more_than_the_workflow(tmp_path):
    import tomllib

    from xai_lab.study.design_file import parse_design
    from xai_lab.study.planted import PlantedEffects, simulate_export

    text = SHIPPED_2X2.read_text().replace(
        "[factors.explanation]", '[factors.confidence]\nvary = "between"\nlevels = ["percent", "verbal"]\n\n'
                                 "[factors.explanation]").replace("block_sizes = [4, 8]", "block_sizes = [8]")
    design = parse_design(tomllib.loads(text), "roc.toml")
    simulate_export(design, PlantedEffects(), 12, seed=3).write(tmp_path / "export")
    (tmp_path / "export" / "design.json").write_text(json.dumps(design.to_json()))
    result = run_cli("analyze", str(tmp_path / "export"), "--out", str(tmp_path / "report"), "--resamples", "100",
                     "--no-mixed")
    assert result.code == 0, result.err
    mrmc = json.loads((tmp_path / "report" / "summary.json").read_text())["mrmc"]
    cells = mrmc["between_conditions"]
    assert cells["design"] == "split-plot" and sorted(cells["modalities"]) == [
        "workflow=rely, confidence=percent", "workflow=rely, confidence=verbal",
        "workflow=verify, confidence=percent", "workflow=verify, confidence=verbal"]
    assert "Between conditions" in (tmp_path / "report" / "report.html").read_text()
