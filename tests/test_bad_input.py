"""Every bad input named in the foundation issue: one clear line, exit status 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image
from test_importers import make_image_folder, make_medmnist_npz


def assert_clean_error(result, *words: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {result.err!r}"
    assert lines[0].startswith("xai-lab: error: ")
    assert "Traceback" not in result.err
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])


def assert_nothing_written(home: Path) -> None:
    data = home / "data"
    assert not data.exists() or not any(data.iterdir()), sorted(p.name for p in data.iterdir())


def test_missing_file(lab_home, tmp_path):
    result = run_cli("data", "import", tmp_path / "nope.npz", "--name", "x")
    assert_clean_error(result, "no such file", "nope.npz")
    assert_nothing_written(lab_home)


def test_corrupt_npz(lab_home, tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 10)
    assert_clean_error(run_cli("data", "import", path, "--name", "x"), "not a readable .npz", "broken.npz")
    assert_nothing_written(lab_home)


def test_truncated_npz(lab_home, tmp_path):
    good = make_medmnist_npz(tmp_path / "good.npz")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert_clean_error(run_cli("data", "import", cut, "--name", "x", "--classes", "a,b"), "cut.npz")
    assert_nothing_written(lab_home)


def test_non_npz_file(lab_home, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("images,labels\n1,2\n")
    assert_clean_error(run_cli("data", "import", path, "--name", "x"), "not a readable .npz")
    assert_nothing_written(lab_home)


def test_wrong_keys(lab_home, tmp_path):
    path = tmp_path / "keys.npz"
    np.savez(path, pictures=np.zeros((4, 8, 8), np.uint8), targets=np.zeros(4))
    assert_clean_error(run_cli("data", "import", path, "--name", "x"), "pictures", "train_images", "labels")
    assert_nothing_written(lab_home)


def test_label_image_count_mismatch(lab_home, tmp_path):
    path = tmp_path / "mismatch.npz"
    np.savez(path, images=np.zeros((30, 8, 8), np.uint8), labels=np.arange(29) % 2)
    assert_clean_error(run_cli("data", "import", path, "--name", "x", "--classes", "a,b"), "30 images", "29 labels")
    assert_nothing_written(lab_home)


def test_medmnist_split_count_mismatch(lab_home, tmp_path):
    path = make_medmnist_npz(tmp_path / "split.npz")
    arrays = dict(np.load(path))
    arrays["val_labels"] = arrays["val_labels"][:-1]
    np.savez(path, **arrays)
    assert_clean_error(run_cli("data", "import", path, "--name", "x", "--classes", "a,b"), "val_labels")
    assert_nothing_written(lab_home)


def test_single_class_dataset(lab_home, tmp_path):
    path = tmp_path / "oneclass.npz"
    np.savez(path, images=np.zeros((30, 8, 8), np.uint8), labels=np.zeros(30, np.uint8))
    assert_clean_error(run_cli("data", "import", path, "--name", "x", "--classes", "a,b"), "only one class")
    assert_nothing_written(lab_home)


def test_single_class_medmnist(lab_home, tmp_path):
    path = make_medmnist_npz(tmp_path / "one.npz", n_classes=1)
    assert_clean_error(run_cli("data", "import", path, "--name", "x", "--classes", "a,b"), "only one class")


def test_single_class_folder(lab_home, tmp_path):
    root = make_image_folder(tmp_path / "one", classes=("normal",))
    assert_clean_error(run_cli("data", "import", root, "--name", "x"), "only one class")
    assert_nothing_written(lab_home)


def test_too_few_images_to_split(lab_home, tmp_path):
    root = make_image_folder(tmp_path / "few", per_class=2)
    assert_clean_error(run_cli("data", "import", root, "--name", "x"), "4 images", "at least")


def test_empty_folder(lab_home, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(run_cli("data", "import", empty, "--name", "x"), "no class subfolders")
    assert_nothing_written(lab_home)


def test_folder_without_images(lab_home, tmp_path):
    root = tmp_path / "imageless"
    for name in ("normal", "opacity"):
        (root / name).mkdir(parents=True)
        (root / name / "readme.txt").write_text("no images here")
    assert_clean_error(run_cli("data", "import", root, "--name", "x"), "no images")
    assert_nothing_written(lab_home)


def test_unreadable_image(lab_home, tmp_path):
    root = make_image_folder(tmp_path / "folder")
    (root / "opacity" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    assert_clean_error(run_cli("data", "import", root, "--name", "x"), "cannot read image", "broken.png")
    assert_nothing_written(lab_home)


def test_a_text_file_named_png_is_named_plainly(lab_home, tmp_path):
    root = make_image_folder(tmp_path / "folder")
    (root / "opacity" / "notes.png").write_text("these are notes, not an image")
    result = run_cli("data", "import", root, "--name", "x")
    assert_clean_error(result, "cannot read image", "notes.png", "not an image format", "remove or replace")
    assert "BytesIO" not in result.err
    assert_nothing_written(lab_home)


def test_analyze_an_unknown_study_leaves_no_folder_behind(lab_home, tmp_path):
    out = tmp_path / "reports" / "nope"
    assert_clean_error(run_cli("analyze", "--study", "nope", "--out", out), "no study 'nope'")
    assert not (tmp_path / "reports").exists()


def test_help_texts_say_each_word_once():
    import contextlib
    import io

    from xai_lab.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        text = " ".join(command.format_help().split())
        for word in ("the", "a", "to", "of"):
            assert f" {word} {word} " not in text, (name, word)
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_cli("mrmc", "--help").code == 0


def test_demo_checks_its_port_before_building_anything(lab_home):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_cli("demo", "--port", str(busy.getsockname()[1]), "--quiet")
    assert_clean_error(result, "choose another --port")
    assert_nothing_written(lab_home)
    assert not (lab_home / "models").exists()


def test_decompression_bomb_is_refused(lab_home, tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "folder")
    Image.new("L", (400, 400)).save(root / "normal" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100 // 2)  # 400x400 is now over twice the limit
    assert_clean_error(run_cli("data", "import", root, "--name", "x"), "cannot read image", "huge.png")


def test_unknown_classes_need_an_explicit_list(lab_home, tmp_path):
    path = make_medmnist_npz(tmp_path / "anonymous.npz")
    assert_clean_error(run_cli("data", "import", path, "--name", "x"), "--classes")
    assert_nothing_written(lab_home)


def test_too_few_class_names(lab_home, tmp_path):
    path = make_medmnist_npz(tmp_path / "three.npz", n_classes=3)
    assert_clean_error(run_cli("data", "import", path, "--name", "x", "--classes", "a,b"), "--classes", "3")


def test_multilabel_file_is_refused(lab_home, tmp_path):
    path = make_medmnist_npz(tmp_path / "chestmnist.npz")
    arrays = dict(np.load(path))
    for split in ("train", "val", "test"):
        arrays[f"{split}_labels"] = np.zeros((len(arrays[f"{split}_images"]), 14), np.uint8)
    np.savez(path, **arrays)
    assert_clean_error(run_cli("data", "import", path, "--name", "x"), "multi-label")


def test_unknown_dataset_name(lab_home):
    assert_clean_error(run_cli("train", "--data", "nonexistent"), "unknown dataset", "nonexistent")
    assert_clean_error(run_cli("data", "show", "nonexistent"), "unknown dataset")


def test_invalid_dataset_name(lab_home):
    assert_clean_error(run_cli("data", "synth", "--name", "../escape", "--n", "40"), "invalid dataset name")
    assert not (lab_home.parent / "escape").exists()


def test_bad_numbers_are_usage_errors(lab_home):
    assert_clean_error(run_cli("data", "synth", "--name", "s", "--n", "3"), "--n")
    assert_clean_error(run_cli("data", "synth", "--name", "s", "--shortcut", "2"), "--shortcut")
    result = run_cli("data", "synth", "--name", "s", "--n", "many")
    assert result.code == 2 and "invalid int value" in result.err
    assert_nothing_written(lab_home)


def test_unknown_medmnist_name_for_fetch(lab_home):
    assert_clean_error(run_cli("data", "fetch", "kneemnist"), "unknown medmnist", "pneumoniamnist")
    assert_clean_error(run_cli("data", "fetch", "pneumoniamnist", "--size", "100"), "--size")


def test_missing_command_prints_help_and_fails():
    result = run_cli()
    assert result.code == 2


def test_damaged_dataset_file_is_reported(lab_home):
    assert run_cli("data", "synth", "--name", "s", "--n", "40", "--size", "32").code == 0
    arrays = lab_home / "data" / "s" / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:200])
    assert_clean_error(run_cli("train", "--data", "s", "--quiet"), "unreadable")


@pytest.fixture
def two_trained_models(lab_home):
    """Two tiny datasets with the same classes and a 1-epoch model on each."""
    for name, seed in (("first", 1), ("second", 2)):
        assert run_cli("data", "synth", "--name", name, "--n", "60", "--size", "32", "--seed", seed).code == 0
        assert run_cli("train", "--data", name, "--epochs", "1", "--quiet").code == 0
    return lab_home


def test_model_from_another_dataset(two_trained_models):
    result = run_cli("evaluate", "--model", two_trained_models / "models" / "first", "--data", "second")
    assert_clean_error(result, "trained on dataset 'first'", "--external")
    external = run_cli("evaluate", "--model", two_trained_models / "models" / "first", "--data", "second",
                       "--external", "--json")
    assert external.code == 0, external.err


def test_model_with_other_classes(two_trained_models, tmp_path):
    path = make_medmnist_npz(tmp_path / "other.npz", size=32)
    run_cli("data", "import", path, "--name", "other", "--classes", "cat,dog")
    result = run_cli("evaluate", "--model", two_trained_models / "models" / "first", "--data", "other", "--external")
    assert_clean_error(result, "predicts", "cat")


def test_not_a_model_folder(lab_home, tmp_path):
    assert_clean_error(run_cli("evaluate", "--model", tmp_path, "--data", "x"), "not a model folder")
    assert_clean_error(run_cli("evaluate", "--model", tmp_path / "missing", "--data", "x"), "no model folder")


def test_damaged_weights_are_reported(two_trained_models):
    weights = two_trained_models / "models" / "first" / "weights.pt"
    weights.write_bytes(b"not a checkpoint")
    assert_clean_error(run_cli("evaluate", "--model", weights.parent, "--data", "first"), "cannot be loaded")
