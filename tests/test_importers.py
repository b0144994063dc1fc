"""Import of every supported format, from the real shared files and from files made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from conftest import run_cli, shared_file
from PIL import Image

from xai_lab import load_dataset


def make_medmnist_npz(path: Path, size: int = 32, channels: int = 1, n: tuple[int, int, int] = (60, 20, 20),
                      n_classes: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        shape = (count, size, size) if channels == 1 else (count, size, size, 3)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % n_classes).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path


def make_single_split_npz(path: Path, n: int = 90, patients: int | None = 30, duplicates: int = 3,
                          size: int = 40) -> Path:
    rng = np.random.default_rng(1)
    labels = np.zeros(n, dtype=np.uint8)
    arrays: dict[str, np.ndarray] = {"images": rng.integers(0, 256, (n, size, size), dtype=np.uint8)}
    if patients:
        patient_of = np.arange(n) % patients
        labels = (patient_of % 3 == 0).astype(np.uint8)  # one label per patient, ~1/3 positive
        arrays["patient_ids"] = np.array([f"P{p:03d}" for p in patient_of])
    else:
        labels[::3] = 1
    dup_of = np.full(n, -1, dtype=np.int32)
    dup_of[n - duplicates:] = np.arange(duplicates)
    arrays.update(labels=labels, dup_of=dup_of, subtypes=np.array(["a", "b", "c"] * (n // 3)))
    np.savez(path, **arrays)
    return path


def make_image_folder(root: Path, classes=("normal", "opacity"), per_class: int = 12, presplit: bool = False) -> Path:
    rng = np.random.default_rng(2)
    splits = ("train", "val", "test") if presplit else ("",)
    for split in splits:
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                width, height = (60 + 10 * (i % 3), 50)  # different sizes and aspect ratios
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                suffix = ".png" if i % 2 else ".jpg"
                Image.fromarray(pixels).save(folder / f"img{i}{suffix}")
    return root


def card_of(home: Path, name: str) -> dict:
    return json.loads((home / "data" / name / "card.json").read_text())


# ------------------------------------------------------------------ real shared data


def test_import_real_pneumoniamnist_keeps_the_official_split(lab_home):
    path = shared_file("pneumoniamnist.npz")
    result = run_cli("data", "import", path, "--name", "pneumonia")
    assert result.code == 0, result.err
    card = card_of(lab_home, "pneumonia")
    assert card["class_names"] == ["normal", "pneumonia"]
    assert card["license"] == "CC BY 4.0"
    assert card["source"]["dataset"] == "pneumoniamnist" and card["source"]["official_file"] is True
    assert card["sha256"] == "e1792d3f03751cb101e99f19a63b3c1941436c988665f47853417b05be250cd8"
    assert {split: sum(c.values()) for split, c in card["counts"].items()} == {"train": 4708, "val": 524, "test": 624}
    assert card["counts"]["test"] == {"normal": 234, "pneumonia": 390}
    assert card["image_size"] == [28, 28] and card["channels"] == 1
    dataset = load_dataset("pneumonia")
    train = dataset["train"]
    assert train.images.shape == (4708, 1, 28, 28) and train.images.dtype == torch.float32
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0
    raw = np.load(path)
    np.testing.assert_array_equal((train.images[:5, 0] * 255).round().byte().numpy(), raw["train_images"][:5])
    np.testing.assert_array_equal(train.labels.numpy(), raw["train_labels"][:, 0])


def test_import_real_kermany_splits_by_patient_and_drops_duplicates(lab_home):
    path = shared_file("kermany_cxr_test_224.npz")
    result = run_cli("data", "import", path, "--name", "kermany")
    assert result.code == 0, result.err
    card = card_of(lab_home, "kermany")
    assert card["class_names"] == ["normal", "pneumonia"] and card["license"] == "CC BY 4.0"
    assert sum(sum(c.values()) for c in card["counts"].values()) == 624 - 6
    assert any("dropped 6" in note for note in card["notes"])
    assert "patient" in card["split_method"]
    dataset = load_dataset("kermany")
    raw = np.load(path)
    patient_of_case = {f"img-{i:05d}": p for i, p in enumerate(raw["patient_ids"])}
    patients = {split: {patient_of_case[c] for c in dataset[split].case_ids} for split in ("train", "val", "test")}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    duplicate_ids = {f"img-{i:05d}" for i in np.flatnonzero(raw["dup_of"] >= 0)}
    assert not duplicate_ids & {c for s in dataset.splits.values() for c in s.case_ids}
    for split in ("train", "val", "test"):  # stratified: every split near the overall 37% normal
        share_normal = float((dataset[split].labels == 0).float().mean())
        assert 0.25 < share_normal < 0.5, (split, share_normal)
    assert dataset["test"].images.shape[1:] == (1, 224, 224)
    assert "subtypes" in dataset["test"].metadata


# ------------------------------------------------------------------ files made here


def test_medmnist_layout_with_explicit_classes(lab_home, tmp_path):
    path = make_medmnist_npz(tmp_path / "mine.npz", size=32)
    result = run_cli("data", "import", path, "--name", "mine", "--classes", "benign,malignant")
    assert result.code == 0, result.err
    card = card_of(lab_home, "mine")
    assert card["class_names"] == ["benign", "malignant"]
    assert card["counts"]["train"] == {"benign": 30, "malignant": 30}
    assert card["license"].startswith("unknown")


def test_medmnist_class_names_come_from_the_file_name_when_checksum_is_unknown(lab_home, tmp_path):
    path = make_medmnist_npz(tmp_path / "breastmnist_64.npz", size=64)
    assert run_cli("data", "import", path, "--name", "breast").code == 0
    assert card_of(lab_home, "breast")["class_names"] == ["malignant", "normal, benign"]


def test_colour_medmnist_is_imported_with_three_channels(lab_home, tmp_path):
    path = make_medmnist_npz(tmp_path / "colour.npz", channels=3, n_classes=3)
    assert run_cli("data", "import", path, "--name", "colour", "--classes", "a,b,c").code == 0
    dataset = load_dataset("colour")
    assert dataset["val"].images.shape == (20, 3, 32, 32)
    assert dataset.card.channels == 3


def test_import_can_resize(lab_home, tmp_path):
    path = make_medmnist_npz(tmp_path / "small.npz", size=28)
    assert run_cli("data", "import", path, "--name", "big", "--classes", "x,y", "--size", "56").code == 0
    assert load_dataset("big")["train"].images.shape[-2:] == (56, 56)


def test_single_split_file_is_split_by_patient(lab_home, tmp_path):
    path = make_single_split_npz(tmp_path / "pool.npz")
    assert run_cli("data", "import", path, "--name", "pool", "--classes", "neg,pos").code == 0
    dataset = load_dataset("pool")
    raw = np.load(path)
    patient = {f"img-{i:05d}": p for i, p in enumerate(raw["patient_ids"])}
    seen: dict[str, str] = {}
    for split in ("train", "val", "test"):
        for case in dataset[split].case_ids:
            assert seen.setdefault(patient[case], split) == split, "a patient appears in two splits"
    assert sum(len(s) for s in dataset.splits.values()) == 87  # 3 duplicates dropped


def test_single_split_file_without_patients_is_split_by_image(lab_home, tmp_path):
    path = make_single_split_npz(tmp_path / "pool.npz", patients=None)
    assert run_cli("data", "import", path, "--name", "pool", "--classes", "neg,pos").code == 0
    card = card_of(lab_home, "pool")
    assert "no patient ids" in card["split_method"]
    assert all(set(c.values()) != {0} for c in card["counts"].values())


def test_image_folder_is_resized_consistently_and_split(lab_home, tmp_path):
    root = make_image_folder(tmp_path / "folder")
    result = run_cli("data", "import", root, "--name", "folder", "--size", "48")
    assert result.code == 0, result.err
    dataset = load_dataset("folder")
    assert dataset.class_names == ["normal", "opacity"]
    assert all(s.images.shape[1:] == (1, 48, 48) for s in dataset.splits.values())
    assert sum(len(s) for s in dataset.splits.values()) == 24
    assert any(case.endswith(".jpg") for s in dataset.splits.values() for case in s.case_ids)


def test_colour_image_folder(lab_home, tmp_path):
    root = make_image_folder(tmp_path / "colour")
    assert run_cli("data", "import", root, "--name", "colour", "--size", "40", "--channels", "3").code == 0
    assert load_dataset("colour")["train"].images.shape[1:] == (3, 40, 40)
    refused = run_cli("data", "import", make_medmnist_npz(tmp_path / "m.npz"), "--name", "m", "--channels", "3")
    assert refused.code == 2 and "image folders" in refused.err


def test_presplit_image_folder_keeps_its_splits(lab_home, tmp_path):
    root = make_image_folder(tmp_path / "presplit", per_class=4, presplit=True)
    assert run_cli("data", "import", root, "--name", "presplit", "--size", "32").code == 0
    dataset = load_dataset("presplit")
    for split in ("train", "val", "test"):
        assert len(dataset[split]) == 8
        assert all(case.startswith(f"{split}/") for case in dataset[split].case_ids)


def test_every_dataset_gets_a_complete_card(lab_home, tmp_path):
    path = make_medmnist_npz(tmp_path / "cardtest.npz")
    run_cli("data", "import", path, "--name", "cardtest", "--classes", "a,b")
    card = card_of(lab_home, "cardtest")
    for key in ("source", "license", "sha256", "content_sha256", "class_names", "counts", "image_size", "channels",
                "split_method", "created_at", "intended_use"):
        assert card[key] not in (None, ""), key
    assert len(card["sha256"]) == 64


def test_data_list_shows_every_dataset(lab_home, tmp_path):
    run_cli("data", "synth", "--name", "s1", "--n", "40", "--size", "32")
    run_cli("data", "import", make_medmnist_npz(tmp_path / "m.npz"), "--name", "m1", "--classes", "a,b")
    listing = run_cli("data", "list")
    assert listing.code == 0
    assert "s1" in listing.out and "m1" in listing.out
    as_json = json.loads(run_cli("data", "list", "--json").out)
    assert {card["name"] for card in as_json} == {"s1", "m1"}


def test_overwrite_replaces_a_dataset_and_refusal_keeps_it(lab_home):
    assert run_cli("data", "synth", "--name", "s", "--n", "40", "--size", "32", "--seed", "1").code == 0
    before = card_of(lab_home, "s")["content_sha256"]
    refused = run_cli("data", "synth", "--name", "s", "--n", "40", "--size", "32", "--seed", "2")
    assert refused.code == 2 and "--overwrite" in refused.err
    assert card_of(lab_home, "s")["content_sha256"] == before
    assert run_cli("data", "synth", "--name", "s", "--n", "40", "--size", "32", "--seed", "2", "--overwrite").code == 0
    assert card_of(lab_home, "s")["content_sha256"] != before
    assert sorted(p.name for p in (lab_home / "data").iterdir()) == ["s"]  # no staging folders left
