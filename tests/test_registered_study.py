"""One home for a registered study: the database row (design, case set with each map's request and
key) is what the app serves, and the map a case set names is the map prepare computed."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_cli, write_study

from xai_lab.errors import ConfigError, ExplainError
from xai_lab.explain.request import ExplanationRequest
from xai_lab.paths import explanation_cache_dir
from xai_lab.store.database import open_database
from xai_lab.study.cases import load_case_set, prepared_path
from xai_lab.study.catalogue import open_catalogue
from xai_lab.study.design import StudyDesign
from xai_lab.study.design_file import load_design
from xai_lab.study.media import StudyMedia
from xai_lab.study.serve_setup import register_design_files

STUDIES = Path(__file__).resolve().parents[1] / "studies"


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.stem)
def test_a_design_comes_back_from_its_json_unchanged(path):
    design = load_design(path)
    again = StudyDesign.from_json(json.loads(json.dumps(design.to_json())))
    assert again == design and again.fingerprint() == design.fingerprint()


# The shipped designs' fingerprints are pinned in tests/test_upgrade.py.


def test_the_served_study_is_read_from_the_database_not_the_files(study_home, tmp_path):
    engine = open_database()
    copy = tmp_path / "t.toml"
    shutil.copy(study_home / "t.toml", copy)
    ids = register_design_files(engine, [copy])
    copy.unlink()  # the design file and the prepared case set are no longer needed
    prepared = prepared_path("t")
    moved = prepared.rename(tmp_path / "case_set.json")
    try:
        served = open_catalogue(engine, tuple(ids))["t"]
    finally:
        moved.rename(prepared)
    on_file = load_design(study_home / "t.toml")
    assert replace(served.design, source="") == replace(on_file, source="")  # source: the file first registered
    assert served.case_set == load_case_set(on_file)


def test_an_unregistered_study_id_is_one_line_naming_the_fix(study_home):
    with pytest.raises(ConfigError, match="study 'nope' is not registered .*xai-lab serve --design FILE"):
        open_catalogue(open_database(), ("nope",))


def test_two_served_files_with_one_id_are_refused(study_home, tmp_path):
    copy = tmp_path / "again.toml"
    shutil.copy(study_home / "t.toml", copy)
    with pytest.raises(ConfigError, match="two served designs share the id 't'"):
        register_design_files(open_database(), [study_home / "t.toml", copy])


def test_maps_with_non_default_parameters_are_prepared_recorded_and_found(study_home):
    path = write_study(study_home, study_id="occl")
    path.write_text(path.read_text().replace('method = "gradcam"',
                                             'method = "occlusion"\n\n[explanation.parameters]\n'
                                             'window_fraction = 0.25\nbaseline = "black"'))
    result = run_cli("study", "prepare", str(path))
    assert result.code == 0, result.err
    case_set = load_case_set(load_design(path))
    assert case_set.explanation["parameters"] == {"window_fraction": 0.25, "baseline": "black",
                                                  "perturbations_per_eval": 32}
    media = StudyMedia.open(case_set)
    cache = explanation_cache_dir("tiny")
    for case in (*case_set.cases, *case_set.practice):
        request = case_set.explanation_request(case)
        assert case_set.overlay_keys[case.case_id] == request.key()
        assert request.key() != ExplanationRequest.create("occlusion", target=request.target).key()
        assert list(cache.glob(f"cases/*/{request.key()}.npz")), "the recorded key names a file in the cache"
        assert media.layer_png(case.case_id, look="contour") is not None
    planted = [case for case in case_set.cases if case.advice_source == "planted"]
    assert planted and all(case_set.explanation_request(case).target == case.target for case in planted)


def test_keys_of_maps_prepared_by_earlier_versions_are_unchanged():
    # literal keys of the cache entries earlier versions wrote: their prepared studies keep their maps
    assert ExplanationRequest.create("gradcam").key() == "gradcam-d7f31974d5ddce93"
    assert ExplanationRequest.create("occlusion", target=1).key() == "occlusion-e53f8d70f169bd80"


def test_bad_method_parameters_are_refused_naming_the_fix():
    with pytest.raises(ExplainError, match="occlusion has no parameter size; its parameters: window_fraction"):
        ExplanationRequest.create("occlusion", {"size": 3})
    with pytest.raises(ExplainError, match="baseline must be one of blurred, black, got 'white'"):
        ExplanationRequest.create("occlusion", {"baseline": "white"})
    with pytest.raises(ExplainError, match="unknown saliency method 'lime'"):
        ExplanationRequest.create("lime")
