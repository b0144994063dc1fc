"""Attention telemetry: what the browser may report is bounded, a trial's record sums it over its
looks, and the report's sensitivity analysis leaves out trials away for more than the declared share."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
from conftest import use_lab

from xai_lab.analysis.analyze import analyze_export
from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.export import export_study, table_file
from xai_lab.study.flow import InvalidAnswer
from xai_lab.study.service import StudyService
from xai_lab.study.simulate import SimulationConfig, simulate
from xai_lab.study.steps.trial import check_viewer_activity, viewer_columns

REPORT = {"zoom_actions": 1, "pan_actions": 0, "window_changes": 0, "resets": 0, "max_zoom": 1.5,
          "hidden_ms": 4000, "blurred_ms": 5000, "viewport_width": 1366, "viewport_height": 768}


def test_telemetry_is_bounded_and_summed_over_a_trials_looks():
    assert check_viewer_activity(REPORT)["hidden_ms"] == 4000
    for name, bad in (("hidden_ms", -1), ("hidden_ms", 10**12), ("viewport_width", 1.5), ("blurred_ms", True)):
        with pytest.raises(InvalidAnswer, match=name):
            check_viewer_activity({**REPORT, name: bad})
    old = {k: v for k, v in REPORT.items() if k not in ("hidden_ms", "blurred_ms", "viewport_width",
                                                          "viewport_height")}
    assert viewer_columns({"final": check_viewer_activity(old)})["hidden_ms"] is None  # a browser before telemetry
    both = viewer_columns({"initial": REPORT, "final": {**REPORT, "hidden_ms": 1000, "viewport_width": 800}})
    assert (both["hidden_ms"], both["blurred_ms"], both["viewport_width"]) == (5000, 10000, 800)


def test_trials_away_too_long_are_left_out_in_a_sensitivity_analysis(study_home, monkeypatch, tmp_path):
    home = use_lab(study_home, monkeypatch)
    design = load_design(home / "t.toml")
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{home}/{uuid.uuid4().hex}.db")
    simulate(service, SimulationConfig(participants=9, seed=3, dropout=0.0))
    out = tmp_path / "export"
    export_study(service.engine, "t", out)
    path = table_file(out, "trials")
    trials = pd.read_csv(path)
    trials["rt_final_ms"] = 10_000  # simulated readers answer at once: give every trial ten seconds
    reading = trials["rt_final_ms"] + trials["rt_initial_ms"].fillna(0)
    trials["hidden_ms"] = 0
    trials["blurred_ms"] = 0
    trials.loc[trials.index[:5], "hidden_ms"] = (reading.iloc[:5] * 0.5).astype(int)  # away half the time
    trials.loc[trials.index[5:7], "blurred_ms"] = (reading.iloc[5:7] * 0.2).astype(int)  # unfocused a fifth
    trials.to_csv(path, index=False)
    names = [name for name, _ in analyze_export(out, resamples=200, mixed=False, rehearsal=True).estimands.sensitivity]
    assert any("hidden or the window unfocused at most 10% of their reading time (7 left out)" in n for n in names)
