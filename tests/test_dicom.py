"""DICOM import: display pixels as a viewer makes them, identifying files refused, split by patient,
and a study prepared from DICOM files runs end to end. Every file is made here with pydicom."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_study
from support.dicom_files import dicom_tree, with_raw_value, write_bomb, write_dicom

from xai_lab import load_dataset
from xai_lab.data.dicom import read_dicom_image
from xai_lab.errors import DataError

RAMP = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (64, 1))  # 64 x 64, each row stored 0..4032


def test_window_and_rescale_follow_the_dicom_standard(tmp_path):
    """Rescale to modality units (value - 1024), window centre 0 width 1000: -500 and below black,
    +500 and above white, linear in between (PS3.3 C.11.2.1.2)."""
    path = write_dicom(tmp_path / "ct", RAMP, rescale=(1.0, -1024.0), window=(0.0, 1000.0))
    image = read_dicom_image(path, size=32, channels=1)
    assert image.window == (0.0, 1000.0) and image.window_from_file and image.pixels.shape == (1, 32, 32)
    modality = RAMP[0].astype(float) - 1024
    expected = np.clip((modality + 500) / 1000, 0, 1) * 255
    full = _display_row(path)
    assert np.abs(full - expected).max() <= 1.5  # pydicom's LINEAR window vs the formula, in 8-bit steps
    assert full[modality <= -500].max() == 0 and full[modality >= 500].min() == 255


def test_monochrome1_is_inverted_so_bright_means_dense(tmp_path):
    plain = _display_row(write_dicom(tmp_path / "m2", RAMP, photometric="MONOCHROME2"))
    inverted = _display_row(write_dicom(tmp_path / "m1", RAMP, photometric="MONOCHROME1"))
    assert plain[0] == 0 and plain[-1] == 255  # no window: minimum to maximum
    assert np.array_equal(inverted, 255 - plain)


def test_files_that_still_identify_a_patient_are_refused_unless_allowed(lab_home, tmp_path):
    root = dicom_tree(tmp_path / "dcm", per_class=12)
    write_dicom(root / "normal" / "extra" / "IM9999", RAMP, identifying={"PatientName": "Doe^Jane",
                                                                        "InstitutionName": "St Elsewhere"})
    refused = run_cli("data", "import", str(root), "--name", "dcm", "--size", "32")
    assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
    assert "PatientName, InstitutionName" in refused.err and "--allow-identifiable" in refused.err
    assert not (lab_home / "data" / "dcm").exists()  # nothing written
    allowed = run_cli("data", "import", str(root), "--name", "dcm", "--size", "32", "--allow-identifiable")
    assert allowed.code == 0, allowed.err
    stored = (lab_home / "data" / "dcm" / "card.json").read_text() + str(load_dataset("dcm")["train"].metadata)
    assert "Doe" not in stored and "Elsewhere" not in stored and "anon-" not in stored  # only a hash of Patient ID


def test_burned_in_annotation_is_refused(tmp_path):
    from xai_lab.data.importers import read_source

    root = dicom_tree(tmp_path / "dcm", per_class=12)
    write_dicom(root / "lesion" / "IMX", RAMP, identifying={"BurnedInAnnotation": "YES"})
    with pytest.raises(DataError, match="BurnedInAnnotation=YES"):
        read_source(root, size=32)


def test_card_holds_spacing_and_window_and_patients_stay_in_one_split(lab_home, tmp_path):
    root = dicom_tree(tmp_path / "dcm", per_class=30, images_per_patient=3)
    result = run_cli("data", "import", str(root), "--name", "dcm", "--size", "32")
    assert result.code == 0, result.err
    card = json.loads((lab_home / "data" / "dcm" / "card.json").read_text())
    assert card["source"]["kind"] == "dicom_folder" and card["source"]["patients"] == 20
    assert card["source"]["pixel_spacing_mm"]["stored_median"] == pytest.approx(0.2)
    assert card["source"]["pixel_spacing_mm"]["display_median"] == pytest.approx(0.2 * 48 / 32)
    assert card["source"]["window"]["center_median"] == 2000.0 and card["source"]["window"]["files_with_window"] == 60
    assert "grouped by patient" in card["split_method"] and card["class_names"] == ["lesion", "normal"]
    dataset = load_dataset("dcm")
    split_of_patient: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        for group in dataset[split].metadata["patient_group"]:
            split_of_patient.setdefault(str(group), set()).add(split)
    assert len(split_of_patient) == 20 and all(len(splits) == 1 for splits in split_of_patient.values())


@pytest.mark.parametrize("damage, message", [
    ("stray", "is not a DICOM file"),
    ("one_class", "only one class folder"),
])
def test_a_broken_dicom_folder_is_one_line_and_exit_2(lab_home, tmp_path, damage, message):
    root = dicom_tree(tmp_path / "dcm", per_class=12)
    if damage == "stray":
        (root / "lesion" / "notes.txt").write_text("reported by Dr X")
    else:
        for path in sorted((root / "normal").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (root / "normal").rmdir()
    result = run_cli("data", "import", str(root), "--name", "dcm")
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1, result.err


@pytest.mark.slow
def test_a_study_prepared_from_dicom_files_runs_end_to_end(lab_home, tmp_path):
    from test_study import check_simulated_study

    from xai_lab.study.cases import load_case_set
    from xai_lab.study.design_file import load_design
    from xai_lab.study.service import StudyService
    from xai_lab.study.simulate import SimulationConfig, simulate

    root = dicom_tree(tmp_path / "hospital", per_class=40)
    assert run_cli("data", "import", str(root), "--name", "dcm", "--size", "32").code == 0
    assert run_cli("train", "--data", "dcm", "--epochs", "4", "--members", "1", "--quiet").code == 0
    study_file = write_study(tmp_path, study_id="dicom")
    study_file.write_text(study_file.read_text().replace('"tiny"', '"dcm"'))
    prepared = run_cli("study", "prepare", str(study_file))
    assert prepared.code == 0, prepared.err
    design = load_design(study_file)
    service = StudyService.open(design, load_case_set(design), url=f"sqlite:///{tmp_path}/dicom.db")
    assert simulate(service, SimulationConfig(participants=6, dropout=0.0)).completed == 6
    frames = check_simulated_study(service, tmp_path / "export")
    assert set(frames["trials"]["case_id"]) <= set(load_dataset("dcm").splits["test"].case_ids)
    # the study viewer gets each case at the file's 48 px, its map layer over the same square
    from PIL import Image

    from xai_lab.study.media import StudyMedia

    media = StudyMedia.open(load_case_set(design))
    case = next(case for case in load_case_set(design).cases if case.advice_source == "model")
    assert Image.open(io.BytesIO(media.reading_png(case.case_id))).size == (48, 48)
    layer = Image.open(io.BytesIO(media.layer_png(case.case_id, look="contour")))
    assert layer.mode == "RGBA" and layer.size == (512, 512)


def _display_row(path: Path) -> np.ndarray:
    """One row of the display pixels at the stored size (64 px: no resampling)."""
    return read_dicom_image(path, size=RAMP.shape[1], channels=1).pixels[0, 0].astype(float)


@pytest.mark.parametrize("case_id", ["pneumonia/im1.png", "../../outside", "a\\b", "..", "x" * 200])
def test_path_like_case_ids_are_cached_inside_the_cache_folder(tmp_path, case_id):
    """Image-folder case ids are relative paths; each gets its own entry, never outside the cache."""
    from support.cards import a_model_card

    from xai_lab.explain.cache import CachedPrediction, ExplanationCache

    cache = ExplanationCache(tmp_path / "cache", a_model_card())
    cache.save_prediction(CachedPrediction(case_id, 1, 0, [0.6, 0.4]))
    assert cache.load_prediction(case_id) == CachedPrediction(case_id, 1, 0, [0.6, 0.4])
    assert cache.load_prediction(case_id + "x") is None
    written = [path for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    assert written and all(path.resolve().is_relative_to((tmp_path / "cache" / "cases").resolve()) for path in written)


def test_the_reader_gets_the_file_at_its_own_resolution(lab_home, tmp_path):
    """The model reads 32 px; the viewer gets the same centre square at the file's 48 px (the
    shorter side of 48 x 64), from a reading copy beside the dataset."""
    from PIL import Image

    from xai_lab.data.squares import reading_copy_path

    root = dicom_tree(tmp_path / "dcm", per_class=12)
    assert run_cli("data", "import", str(root), "--name", "dcm", "--size", "32").code == 0
    dataset = load_dataset("dcm")
    case_id = dataset["test"].case_ids[0]
    copy = Image.open(reading_copy_path(dataset.path, case_id))
    assert copy.size == (48, 48) and copy.mode == "L"
    model_view = dataset["test"].images[0, 0].numpy()
    shrunk = np.asarray(copy.resize((32, 32), Image.Resampling.BILINEAR), dtype=float) / 255
    assert np.corrcoef(shrunk.ravel(), model_view.ravel())[0, 1] > 0.9  # the same square, not another crop


def test_no_reading_copy_when_the_file_is_no_larger_than_the_dataset(lab_home, tmp_path):
    from xai_lab.data.squares import READING_FOLDER

    root = dicom_tree(tmp_path / "dcm", per_class=12)
    assert run_cli("data", "import", str(root), "--name", "same", "--size", "48").code == 0
    assert not (lab_home / "data" / "same" / READING_FOLDER).exists()


MEASURE = """
import sys, time, tracemalloc
from pathlib import Path
from xai_lab.data.dicom import read_dicom_image
from xai_lab.errors import DataError
# Python's and numpy's allocations (numpy reports to tracemalloc): what the read itself takes, unlike
# the resident size, which also counts library pages first touched now (on a busy machine, many)
tracemalloc.start()
started = time.perf_counter()
try:
    read_dicom_image(Path(sys.argv[1]), size=64, channels=1)
    said = "read"
except DataError as error:
    said = str(error)
seconds = time.perf_counter() - started
peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
print(f"{seconds:.3f} {peak_mb:.1f} {said}")
"""


@pytest.mark.parametrize("kind", ["deflated", "rle"])
def test_dicom_bombs_are_refused_from_the_header(tmp_path, kind):
    """8192 x 8192 x 16 bit claimed in ~130 kB (deflate) or ~2 MB (RLE): refused before decoding, in a
    fresh process whose peak allocation during the read is measured."""
    path = write_bomb(tmp_path / f"{kind}.dcm", kind)
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=120)
    seconds, grown_mb, said = done.stdout.strip().split(" ", 2)
    assert ("inflates to more than" if kind == "deflated" else "8192 x 8192 pixels, above the limit") in said, said
    assert float(seconds) < 1.0 and float(grown_mb) < 200, (seconds, grown_mb)


def test_an_image_at_the_size_limit_is_still_read(tmp_path):
    side = 4096  # 16.8 megapixels, 16 bits: a large radiograph, well within the limits
    path = write_dicom(tmp_path / "large", np.tile(np.arange(side, dtype=np.uint16), (side, 1)), bits=16)
    image = read_dicom_image(path, size=64, channels=1)
    assert image.pixels.shape == (1, 64, 64) and image.pixels.max() > 200


@pytest.mark.parametrize("written, raw, message", [
    ({"window": (4321.5, 1000.0)}, ("4321.5", "abc   "), "WindowCenter is 'abc', not a number"),
    ({"window": (40.0, 0.0)}, None, "WindowWidth is 0; a window must be at least 1 wide"),
    ({"rescale": (7.25, 0.0)}, ("7.25", "NaN "), "RescaleSlope is [nan], not a finite number"),
    ({"rescale": (0.0, 0.0)}, None, "RescaleSlope is 0"),
])
def test_bad_window_or_rescale_values_are_one_line_and_exit_2(lab_home, tmp_path, written, raw, message):
    root = dicom_tree(tmp_path / "dcm", per_class=12)
    path = write_dicom(root / "lesion" / "bad" / "IM0001", RAMP, **written)
    if raw is not None:
        with_raw_value(path, *raw)
    result = run_cli("data", "import", str(root), "--name", "dcm", "--size", "32")
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert message in result.err and "IM0001" in result.err and "remove it" in result.err, result.err
    assert not (lab_home / "data" / "dcm").exists()
