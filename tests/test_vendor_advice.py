"""A vendor's outputs and maps without its model (`xai-lab advice import`, `[cases] advice = "imported:NAME"`).

The acceptance check: a vendor table made from a lab model's own outputs and maps, imported as advice,
gives the same case set and the same trial screens (probabilities, advice, maps) as the study run on the
model itself. Then every refusal: one line naming the fix, exit 2, nothing written.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, use_lab, write_study
from PIL import Image
from support.vendor_files import VendorFiles, vendor_files

from xai_lab.study.cases import load_case_set
from xai_lab.study.design_file import load_design
from xai_lab.study.service import StudyService

pytestmark = pytest.mark.xdist_group("vendor_advice")


@pytest.fixture(scope="module")
def vendor(study_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """The study on the model ('m', one arm: the AI up front) and the vendor's files made from its outputs."""
    with pytest.MonkeyPatch.context() as patch:
        use_lab(study_home, patch)
        # the model's real errors only, if it has any: a vendor's advice is never planted
        design = study(study_home, "m", 'model = "tiny"', 0.0, 'method = "gradcam"')
        assert run_cli("study", "prepare", str(design)).code == 0
        files = vendor_files("tiny", "tiny", load_case_set(load_design(design)), tmp_path_factory.mktemp("vendor"))
        share = round(min(files.model_errors, 2) / 6, 2)
        if share:
            design = study(study_home, "m", 'model = "tiny"', share, 'method = "gradcam"')
            assert run_cli("study", "prepare", str(design)).code == 0
            files = vendor_files("tiny", "tiny", load_case_set(load_design(design)), tmp_path_factory.mktemp("v"))
        yield Vendor(study_home, share, files)


@dataclass(frozen=True)
class Vendor:
    home: Path  # the module's lab, holding study 'm' prepared on model 'tiny'
    share: float  # the studies' ai_wrong_share: the model's real errors only
    files: VendorFiles  # the vendor's table and maps, made from the model's own outputs


def study(home: Path, study_id: str, model_line: str, share: float, method_line: str, advice: str = "model") -> Path:
    design = write_study(home, study_id=study_id, arms='["rely"]', blocks="[1, 2]")
    text = design.read_text().replace('model = "tiny"', model_line).replace('method = "gradcam"', method_line)
    text = text.replace('advice = "planted"', f'advice = "{advice}"').replace("ai_wrong_share = 0.34",
                                                                              f"ai_wrong_share = {share}")
    design.write_text(text)
    return design


def imported_study(vendor, name: str, study_id: str, maps: Path | None, *extra: str) -> Path:
    command = ["advice", "import", str(vendor.files.table), "--data", "tiny", "--name", name, "--threshold",
               str(vendor.files.threshold), *extra]
    result = run_cli(*command, *(["--maps", str(maps)] if maps else []))
    assert result.code == 0, result.err
    return study(vendor.home, study_id, "", vendor.share, "", advice=f"imported:{name}")


def screens(design: Path, home: Path) -> dict[str, dict]:
    """What one participant of the study is shown with the advice, case by case, walking every step."""
    from test_study import key

    from xai_lab.study.simulate import SimulatedClinician, SimulationConfig

    loaded = load_design(design)
    service = StudyService.open(loaded, load_case_set(loaded), url=f"sqlite:///{home}/{uuid.uuid4().hex}.db")
    token = service.enrol()
    clinician = SimulatedClinician(SimulationConfig(participants=1), 0, service)
    step, shown = service.resume(token), {}
    while step.status == "in_progress":
        if step.kind in ("trial", "practice") and "ai" in step.content:
            shown[step.content["case_id"]] = step.content["ai"]
        step = service.submit(token, step.key, clinician.answer(step), key())
    return shown


def layers(design: Path, look: str) -> dict[str, np.ndarray]:
    from xai_lab.study.media import StudyMedia

    case_set = load_case_set(load_design(design))
    media = StudyMedia.open(case_set)
    return {case.case_id: np.asarray(Image.open(io.BytesIO(media.layer_png(case.case_id, look))))
            for case in case_set.cases + case_set.practice}


def test_a_vendor_table_of_the_models_own_outputs_gives_the_same_study(vendor, monkeypatch):
    home = vendor.home
    use_lab(home, monkeypatch)
    model_design = home / "m.toml"
    vendor_design = imported_study(vendor, "vendor_npy", "v", vendor.files.exact_maps)
    assert run_cli("study", "prepare", str(vendor_design)).code == 0
    on_model, on_vendor = (load_case_set(load_design(d)) for d in (model_design, vendor_design))
    for part in ("cases", "practice", "attention"):
        ours, theirs = getattr(on_model, part), getattr(on_vendor, part)
        assert [c.case_id for c in ours] == [c.case_id for c in theirs], part
        for a, b in zip(ours, theirs, strict=True):
            assert (a.true_label, a.ai_label, a.ai_correct, a.target) == (b.true_label, b.ai_label, b.ai_correct,
                                                                           b.target)
            assert abs(a.ai_confidence - b.ai_confidence) <= 1e-4  # 1 - P(finding) vs the softmax's own, at 4 places
            assert b.advice_source == "model"
    assert on_vendor.model == "vendor_npy" and on_vendor.explanation_method == "vendor_map"

    seen_model, seen_vendor = screens(model_design, home), screens(vendor_design, home)
    assert set(seen_model) == set(seen_vendor) and any(ai["overlay"] for ai in seen_vendor.values())
    for case_id, ours in seen_model.items():
        theirs = seen_vendor[case_id]
        assert abs(ours.pop("confidence") - theirs.pop("confidence")) <= 1e-4
        assert (ours["overlay"] is None) == (theirs["overlay"] is None), case_id  # withheld for "normal" alike
        if ours["overlay"] is not None:
            assert (theirs["overlay"].pop("method"), theirs["overlay"].pop("model")) == ("vendor_map", "vendor_npy")
            ours["overlay"].pop("method"), ours["overlay"].pop("model")
        ours.pop("calibrated"), theirs.pop("calibrated")  # each judged from its own evidence (docs/models.md)
        assert ours == theirs, case_id
    for look in ("heatmap", "contour", "side_by_side"):  # the maps as drawn: the same pixels
        drawn_model, drawn_vendor = layers(model_design, look), layers(vendor_design, look)
        assert all(np.array_equal(drawn_model[c], drawn_vendor[c]) for c in drawn_model), look


def test_maps_from_png_files_equal_the_models_within_png_rounding(vendor, monkeypatch):
    home = vendor.home
    use_lab(home, monkeypatch)
    design = imported_study(vendor, "vendor_png", "vp", vendor.files.rounded_maps)
    assert run_cli("study", "prepare", str(design)).code == 0
    from xai_lab.explain.cache import ExplanationCache
    from xai_lab.explain.request import vendor_map_request
    from xai_lab.model.card import read_model_card
    from xai_lab.model.storage import load_model
    from xai_lab.paths import explanation_cache_dir, model_dir

    case_set = load_case_set(load_design(home / "m.toml"))
    _, card = load_model("tiny")
    ours = ExplanationCache(explanation_cache_dir("tiny"), card)
    theirs = ExplanationCache(explanation_cache_dir("vendor_png"), read_model_card(model_dir("vendor_png")))
    for case in case_set.cases + case_set.practice:
        a = ours.load_explanation(case.case_id, case_set.explanation_request(case)).attribution
        b = theirs.load_explanation(case.case_id, vendor_map_request()).attribution
        assert np.abs(a / a.max() - b / 255).max() <= 0.5 / 255 + 1e-6


def test_the_card_says_where_the_advice_came_from_and_what_cannot_be_checked(vendor, monkeypatch, tmp_path):
    home, table, exact = vendor.home, vendor.files.table, vendor.files.exact_maps
    use_lab(home, monkeypatch)
    small = tmp_path / "small"
    small.mkdir()
    for path in sorted(exact.iterdir())[:2]:  # maps at half the resolution: resized to the image
        np.save(small / path.name, np.load(path)[::2, ::2])
    result = run_cli("advice", "import", str(table), "--data", "tiny", "--name", "half", "--maps", str(small),
                     "--json")
    assert result.code == 0, result.err
    card = json.loads(result.out)
    architecture = card["architecture"]
    assert architecture["type"] == "advice_set" and architecture["maps"] == 2
    assert architecture["maps_resized"].startswith("2 map(s) resized from 16 x 16 to the image's 32 x 32")
    assert "no randomisation check is possible" in architecture["randomisation_check"]
    assert card["training"]["provenance"].startswith("not trained by xai-lab")
    assert card["metrics"]["test"]["covered"] == card["metrics"]["test"]["of"]
    assert 0.5 < card["metrics"]["val"]["auroc"] <= 1.0
    refused = run_cli("evaluate", "--model", "half", "--data", "tiny")
    assert refused.code == 2 and "advice set" in refused.err and "imported:half" in refused.err


def rewrite(table: Path, tmp_path: Path, edit) -> Path:
    rows = list(csv.DictReader(table.open()))
    edit(rows)
    out = tmp_path / "edited.csv"
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def _set(rows: list[dict], key: str, value: str) -> None:
    rows[0][key] = value


@pytest.mark.parametrize("edit, message", [
    (lambda rows: _set(rows, "probability", "1.5"), "row 2: probability '1.5' is outside [0, 1]"),
    (lambda rows: _set(rows, "probability", "high"), "is not a number"),
    (lambda rows: _set(rows, "case_id", "no-such-case"), "no-such-case"),
    (lambda rows: _set(rows, "decision", "maybe"), "decision 'maybe' is not a class"),
    (lambda rows: rows.append(dict(rows[0])), "more than one row"),
])
def test_a_bad_table_is_refused_in_one_line_and_nothing_is_written(vendor, monkeypatch, tmp_path, edit, message):
    home, table = vendor.home, vendor.files.table
    use_lab(home, monkeypatch)
    result = run_cli("advice", "import", str(rewrite(table, tmp_path, edit)), "--data", "tiny", "--name", "bad")
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (home / "models" / "bad").exists() and not (home / "cache" / "bad").exists()


def test_bad_maps_are_refused_in_one_line(vendor, monkeypatch, tmp_path):
    home, table, exact = vendor.home, vendor.files.table, vendor.files.exact_maps
    use_lab(home, monkeypatch)
    first = sorted(exact.iterdir())[0]
    cases = {
        "aspect ratio differs": lambda d: np.save(d / first.name, np.zeros((16, 32), np.float32)),
        "greyscale PNG": lambda d: Image.new("RGB", (32, 32)).save(d / f"{first.stem}.png"),
        "have no row in the table": lambda d: np.save(d / "not-a-case.npy", np.zeros((32, 32), np.float32)),
        "NaN or infinite": lambda d: np.save(d / first.name, np.full((32, 32), np.nan, np.float32)),
        "more than one map file": lambda d: (np.save(d / first.name, np.zeros((32, 32), np.float32)),
                                             Image.new("L", (32, 32)).save(d / f"{first.stem}.png")),
    }
    for message, make in cases.items():
        folder = tmp_path / message.replace(" ", "_")
        folder.mkdir()
        make(folder)
        result = run_cli("advice", "import", str(table), "--data", "tiny", "--name", "bad", "--maps", str(folder))
        assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err
        assert not (home / "models" / "bad").exists()


def test_prepare_refuses_cases_without_a_row_listing_them(vendor, monkeypatch, tmp_path):
    home, share, table = vendor.home, vendor.share, vendor.files.table
    use_lab(home, monkeypatch)
    from xai_lab.data.storage import load_dataset

    dropped = sorted(load_dataset("tiny")["test"].case_ids)[:2]
    partial = rewrite(table, tmp_path, lambda rows: rows.__setitem__(slice(None), [r for r in rows
                                                                                   if r["case_id"] not in dropped]))
    assert run_cli("advice", "import", str(partial), "--data", "tiny", "--name", "partial").code == 0
    design = study(home, "vpart", "", share, "", advice="imported:partial")
    result = run_cli("study", "prepare", str(design))
    assert result.code == 2 and "no row for 2 of the" in result.err and all(c in result.err for c in dropped)
    assert not (home / "prepared" / "vpart").exists()


def test_a_design_cannot_name_another_model_or_method_beside_imported_advice(vendor, monkeypatch):
    home, share = vendor.home, vendor.share
    use_lab(home, monkeypatch)
    both = study(home, "vboth", 'model = "tiny"', share, "", advice="imported:vendor_npy")
    result = run_cli("study", "validate", str(both))
    assert result.code == 2 and "leave model out" in result.err
    unknown = study(home, "vbad", "", share, "", advice="vendor")
    result = run_cli("study", "validate", str(unknown))
    assert result.code == 2 and "use model, planted or imported:NAME" in result.err


def test_the_report_says_the_advice_was_a_vendors_and_unchecked(vendor, monkeypatch, tmp_path):
    home, share, table, exact = vendor.home, vendor.share, vendor.files.table, vendor.files.exact_maps
    use_lab(home, monkeypatch)
    assert run_cli("advice", "import", str(table), "--data", "tiny", "--name", "vendor_r", "--maps", str(exact),
                   "--threshold", str(vendor.files.threshold)).code == 0
    design = write_study(home, study_id="vr", arms='["verify", "rely"]', blocks="[2, 4]")
    text = design.read_text().replace('model = "tiny"\n', "").replace('method = "gradcam"\n', "")
    design.write_text(text.replace('advice = "planted"', 'advice = "imported:vendor_r"')
                      .replace("ai_wrong_share = 0.34", f"ai_wrong_share = {share}"))
    assert run_cli("study", "prepare", str(design)).code == 0
    from xai_lab.study.export import export_study
    from xai_lab.study.simulate import SimulationConfig, simulate

    loaded = load_design(design)
    service = StudyService.open(loaded, load_case_set(loaded), url=f"sqlite:///{tmp_path}/vr.db")
    simulate(service, SimulationConfig(participants=8, seed=1, dropout=0.0))
    export_study(service.engine, "vr", tmp_path / "out")
    result = run_cli("analyze", str(tmp_path / "out"), "--out", str(tmp_path / "report"), "--rehearsal",
                     "--resamples", "100", "--no-mixed")
    assert result.code == 0, result.err
    report = (tmp_path / "report" / "report.html").read_text()
    assert "advice set &#39;vendor_r&#39;" in report and "no randomisation check of the maps was possible" in report


def test_without_validation_rows_the_quality_gate_says_what_to_add(vendor, monkeypatch, tmp_path):
    home, share, table = vendor.home, vendor.share, vendor.files.table
    use_lab(home, monkeypatch)
    from xai_lab.data.storage import load_dataset

    test_ids = set(load_dataset("tiny")["test"].case_ids)
    only_test = rewrite(table, tmp_path, lambda rows: rows.__setitem__(slice(None), [r for r in rows
                                                                                     if r["case_id"] in test_ids]))
    assert run_cli("advice", "import", str(only_test), "--data", "tiny", "--name", "test_only").code == 0
    design = study(home, "vgate", "", share, "", advice="imported:test_only")
    result = run_cli("study", "prepare", str(design))
    assert result.code == 2 and "no validation AUROC" in result.err and "validation split" in result.err, result.err
