"""Importers for real data: MedMNIST .npz, single-split .npz (split by patient), image folders.

Each reader turns a source into `DatasetArrays` plus provenance (`ImportedData`); `import_dataset`
then saves it with a dataset card. Every way a source can be wrong raises `DataError` with a
sentence naming the file and the fix; nothing is written until the whole source has been read
and checked.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms.v2 import functional as TF

from xai_lab.data.dicom import folder_has_dicom, read_dicom_tree
from xai_lab.data.known import KNOWN_FILES_BY_SHA256, MEDMNIST_CITATION, medmnist_by_filename, medmnist_by_md5
from xai_lab.data.records import SPLITS, DatasetArrays, DatasetCard
from xai_lab.data.splitting import check_splittable, grouped_stratified_split, stratified_split
from xai_lab.data.squares import as_channels, model_square, reading_square_png
from xai_lab.data.storage import check_arrays, make_card, save_dataset
from xai_lab.errors import DataError

MEDMNIST_KEYS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels"))
SINGLE_SPLIT_KEYS = ("images", "labels")
DEFAULT_FOLDER_SIZE = 224
UNKNOWN_LICENSE = "unknown (not recorded at import; check the source's terms)"


@dataclass
class ImportedData:
    arrays: DatasetArrays
    class_names: list[str]
    source: dict[str, Any]
    license: str
    split_method: str
    source_sha256: str | None = None
    notes: list[str] = field(default_factory=list)
    reading_copies: dict[str, bytes] = field(default_factory=dict)  # case id -> PNG (xai_lab.data.squares)


    def card(self, name: str) -> DatasetCard:
        """The dataset card these arrays would be saved with."""
        return make_card(name, self.arrays, self.class_names, source=self.source, license=self.license,
                         split_method=self.split_method, source_sha256=self.source_sha256, notes=self.notes)


def import_dataset(path: str | Path, name: str, *, classes: list[str] | None = None, size: int | None = None,
                   seed: int = 0, channels: int | None = None, overwrite: bool = False,
                   allow_identifiable: bool = False) -> DatasetCard:
    """Read any supported source and save it as dataset `name`; returns the dataset card."""
    imported = read_source(path, classes=classes, size=size, seed=seed, channels=channels,
                           allow_identifiable=allow_identifiable)
    return save_dataset(name, imported.arrays, imported.class_names, source=imported.source,
                        license=imported.license, split_method=imported.split_method,
                        source_sha256=imported.source_sha256, notes=imported.notes, overwrite=overwrite,
                        reading_copies=imported.reading_copies)


def read_source(path: str | Path, *, classes: list[str] | None = None, size: int | None = None,
                seed: int = 0, default_classes: list[str] | None = None,
                channels: int | None = None, allow_identifiable: bool = False) -> ImportedData:
    """Dispatch on what `path` is: a folder of class subfolders (images or DICOM), or an .npz of either layout.

    Class names come from `classes`, else from the known-dataset tables, else from
    `default_classes` (e.g. a model's, for external validation), else it is an error.
    `channels` (1 grayscale, 3 colour) applies to folders; .npz files keep their own.
    `allow_identifiable` lets DICOM files that still carry identifying attributes in (xai_lab.data.dicom).
    """
    source = Path(path)
    if not source.exists():
        raise DataError(f"no such file or folder: {source}; check the path")
    if channels not in (None, 1, 3):
        raise DataError(f"--channels must be 1 (grayscale) or 3 (colour), got {channels}")
    if source.is_dir() and folder_has_dicom(source):
        imported = read_dicom_folder(source, classes=classes, size=size or DEFAULT_FOLDER_SIZE, seed=seed,
                                     channels=channels or 1, allow_identifiable=allow_identifiable)
    elif source.is_dir():
        imported = read_image_folder(source, classes=classes, size=size or DEFAULT_FOLDER_SIZE, seed=seed,
                                     channels=channels or 1)
    else:
        if channels is not None:
            raise DataError(f"--channels applies to image folders; {source} is a file and keeps its own channels")
        imported = _read_npz(source, classes, size, seed, default_classes)
    check_arrays(imported.arrays, imported.class_names, str(source))
    return imported


def _read_npz(source: Path, classes: list[str] | None, size: int | None, seed: int,
              default_classes: list[str] | None) -> ImportedData:
    arrays = _open_npz(source)
    if all(key in arrays for key in MEDMNIST_KEYS):
        return read_medmnist(source, arrays, classes=classes, size=size, default_classes=default_classes)
    if all(key in arrays for key in SINGLE_SPLIT_KEYS):
        return read_single_split(source, arrays, classes=classes, size=size, seed=seed,
                                 default_classes=default_classes)
    raise DataError(
        f"{source} has keys {sorted(arrays)}; expected MedMNIST keys ({', '.join(MEDMNIST_KEYS)}) "
        f"or a single split ({', '.join(SINGLE_SPLIT_KEYS)}, optional patient_ids, dup_of)"
    )


def read_medmnist(path: Path, arrays: dict[str, np.ndarray], *, classes: list[str] | None = None,
                  size: int | None = None, default_classes: list[str] | None = None) -> ImportedData:
    """A MedMNIST-layout file with its official train/val/test split (any image size, 1 or 3 channels)."""
    sha256, md5 = file_digests(path)
    recognised = medmnist_by_md5(md5)
    known = recognised[0] if recognised else medmnist_by_filename(path.stem)
    if known is not None and not known.single_label:
        raise DataError(f"{path} is {known.key}, a multi-label dataset ({len(known.class_names)} findings per "
                        "image); xai-lab trains single-label classifiers: use a single-label MedMNIST file")
    data = _official_splits(path, arrays)
    class_names = _class_names(classes, known.class_names if known else None, default_classes, data.labels, path)
    source = {"kind": "medmnist", "file": str(path.resolve()), "md5": md5}
    if known:
        source.update(dataset=known.key, description=known.description,
                      citation=MEDMNIST_CITATION,
                      official_file=recognised is not None, url=known.url(recognised[1]) if recognised else None)
    return ImportedData(_resized(data, size), class_names, source, known.license if known else UNKNOWN_LICENSE,
                        "official MedMNIST train/val/test split", sha256)


def _official_splits(path: Path, arrays: dict[str, np.ndarray]) -> DatasetArrays:
    """Concatenate the train/val/test arrays of a MedMNIST-layout file, checking each pair."""
    images, labels, splits, case_ids = [], [], [], []
    for split in SPLITS:
        split_images = _as_nchw(arrays[f"{split}_images"], path, f"{split}_images")
        split_labels = _as_label_vector(arrays[f"{split}_labels"], path, f"{split}_labels")
        if len(split_images) != len(split_labels):
            raise DataError(f"{path}: {split}_images has {len(split_images)} images but {split}_labels has "
                            f"{len(split_labels)} labels; the file is inconsistent, re-download it")
        images.append(split_images)
        labels.append(split_labels)
        splits.append(np.full(len(split_labels), split, dtype="<U5"))
        case_ids.append(np.array([f"{split}-{i:05d}" for i in range(len(split_labels))]))
    return DatasetArrays(images=np.concatenate(images), labels=np.concatenate(labels),
                         splits=np.concatenate(splits), case_ids=np.concatenate(case_ids))


def read_single_split(path: Path, arrays: dict[str, np.ndarray], *, classes: list[str] | None = None,
                      size: int | None = None, seed: int = 0,
                      default_classes: list[str] | None = None) -> ImportedData:
    """One pool of images, split here: by patient when `patient_ids` exist, duplicates dropped."""
    sha256, md5 = file_digests(path)
    images = _as_nchw(arrays["images"], path, "images")
    labels = _as_label_vector(arrays["labels"], path, "labels")
    n = len(images)
    if len(labels) != n:
        raise DataError(f"{path} has {n} images but {len(labels)} labels; every image needs exactly one label")
    extra = {key: value for key, value in arrays.items()
             if key not in SINGLE_SPLIT_KEYS and value.ndim == 1 and len(value) == n}
    kept, notes = _without_duplicates(extra, n)
    labels_kept = labels[kept]
    has_patients = "patient_ids" in extra
    groups = extra["patient_ids"].astype(str)[kept] if has_patients else kept.astype(str)
    known_file = KNOWN_FILES_BY_SHA256.get(sha256)
    class_names = _class_names(classes, known_file.class_names if known_file else None, default_classes,
                               labels_kept, path)
    if len(np.unique(labels_kept)) < 2:
        raise DataError(f"{path} contains only one class; a classifier needs examples of at least two classes")
    check_splittable(labels_kept, path)
    splits = grouped_stratified_split(labels_kept, groups, seed)
    if has_patients:
        notes.append(f"split by patient: {len(np.unique(groups))} patients, none in two splits")
    data = DatasetArrays(images=images[kept], labels=labels_kept, splits=splits,
                         case_ids=np.array([f"img-{i:05d}" for i in kept]), metadata=_pool_metadata(extra, kept))
    source = {"kind": "single_split_npz", "file": str(path.resolve()), "md5": md5}
    if known_file:
        source.update(description=known_file.description, citation=known_file.citation)
    split_method = (f"stratified by label, grouped by patient (seed {seed})" if has_patients
                    else f"stratified by label (seed {seed}); no patient ids, so images are assumed independent")
    return ImportedData(_resized(data, size), class_names, source,
                        known_file.license if known_file else UNKNOWN_LICENSE, split_method, sha256, notes)


def _without_duplicates(extra: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, list[str]]:
    """Indices to keep: every image whose `dup_of` is negative (the first of each identical group)."""
    if "dup_of" not in extra:
        return np.arange(n), []
    keep = extra["dup_of"].astype(np.int64) < 0
    return np.flatnonzero(keep), [f"dropped {int((~keep).sum())} byte-identical duplicate images (dup_of >= 0)"]


def _pool_metadata(extra: dict[str, np.ndarray], kept: np.ndarray) -> dict[str, np.ndarray]:
    """Other per-image arrays of a pool (e.g. subtypes) become metadata; `splits` is the source's."""
    return {("source_" + key if key == "splits" else key): value[kept] for key, value in extra.items()
            if key != "dup_of" and value.dtype.kind in "iufbU"}


def read_image_folder(root: Path, *, classes: list[str] | None = None, size: int = DEFAULT_FOLDER_SIZE,
                      seed: int = 0, channels: int = 1) -> ImportedData:
    """A torchvision ImageFolder tree: ``root/<class>/<image>`` (split here, stratified) or
    ``root/{train,val,test}/<class>/<image>`` (splits kept). Images are converted to grayscale
    (radiographs), resized on the shorter side to `size` and centre-cropped to size x size,
    which keeps the aspect ratio."""
    files, labels, splits, class_names, presplit = _list_folder_images(root)
    label_array = np.array(labels, dtype=np.int64)
    _at_least_two(class_names, root)
    if not presplit:
        check_splittable(label_array, root)
    split_array = np.array(splits, dtype="<U5") if presplit else stratified_split(label_array, seed)
    decoded = [_read_image(path, size, channels) for path in files]
    images = np.stack([image for image, _, _ in decoded])
    if classes is not None:
        class_names = _class_names(classes, None, None, label_array, root)
    data = DatasetArrays(images=images, labels=label_array, splits=split_array,
                         case_ids=np.array([str(p.relative_to(root)) for p in files]))
    split_method = "folders train/val/test as given" if presplit else f"stratified by label (seed {seed})"
    source = {"kind": "image_folder", "folder": str(root.resolve()), "files": len(files)}
    entries = [(str(p.relative_to(root)), digest) for p, (_, digest, _) in zip(files, decoded, strict=True)]
    copies = {case_id: png for case_id, (_, _, png) in zip(data.case_ids.tolist(), decoded, strict=True)
              if png is not None}
    return ImportedData(data, class_names, source, UNKNOWN_LICENSE, split_method, _folder_digest(entries),
                        [f"images converted to {'grayscale' if channels == 1 else 'RGB'}, resized on the "
                         f"shorter side to {size} px and centre-cropped to {size}x{size}"], copies)


def read_dicom_folder(root: Path, *, classes: list[str] | None = None, size: int = DEFAULT_FOLDER_SIZE,
                      seed: int = 0, channels: int = 1, allow_identifiable: bool = False) -> ImportedData:
    """``root/<class>/**/<DICOM file>``: display pixels, spacing and window per image, split by patient."""
    tree = read_dicom_tree(root, _class_folders(root), size=size, seed=seed, channels=channels,
                           allow_identifiable=allow_identifiable)
    class_names = tree.class_names if classes is None else _class_names(classes, None, None, tree.arrays.labels, root)
    return ImportedData(tree.arrays, class_names, tree.source, UNKNOWN_LICENSE, tree.split_method,
                        _folder_digest(tree.files), tree.notes, tree.reading_copies)


def _list_folder_images(root: Path) -> tuple[list[Path], list[int], list[str], list[str], bool]:
    """(files, labels, splits, class names, presplit) of an ImageFolder tree, in sorted order."""
    split_roots = {split: root / split for split in SPLITS}
    presplit = all(folder.is_dir() for folder in split_roots.values())
    roots = split_roots if presplit else {"all": root}
    class_names = _folder_classes(roots["train" if presplit else "all"])
    files, labels, splits = [], [], []
    for split, folder in roots.items():
        if presplit and _folder_classes(folder) != class_names:
            raise DataError(f"{folder} has class folders {_folder_classes(folder)} but {roots['train']} has "
                            f"{class_names}; every split needs the same class folders")
        samples = make_dataset(str(folder), {c: i for i, c in enumerate(class_names)}, extensions=IMG_EXTENSIONS,
                               allow_empty=True)
        files += [Path(p) for p, _ in samples]
        labels += [label for _, label in samples]
        splits += [split] * len(samples)
    if not files:
        raise DataError(f"{root} has class folders {class_names} but no images in them "
                        f"(looked for {', '.join(IMG_EXTENSIONS)}, and DICOM Part 10 files); add images or point "
                        "to another folder")
    return files, labels, splits, class_names, presplit


def _open_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as stored:
            if not isinstance(stored, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive")
            return {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError) as error:
        raise DataError(f"{path} is not a readable .npz file ({_short(error)}); "
                        "pass a NumPy .npz archive or a folder of images") from None


def _as_nchw(images: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Accept (N,H,W), (N,H,W,1|3) or (N,1|3,H,W); return uint8 (N,C,H,W)."""
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DataError(f"{path}: {key} has shape {images.shape}; expected (N, H, W) grayscale or "
                        "(N, H, W, 3) colour images")
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    if images.dtype.kind == "f" and images.size and 0.0 <= images.min() and images.max() <= 1.0:
        return np.round(images * 255).astype(np.uint8)
    if images.dtype.kind in "iu" and images.size and 0 <= images.min() and images.max() <= 255:
        return images.astype(np.uint8)
    raise DataError(f"{path}: {key} has dtype {images.dtype} with values outside 0-255 (or 0-1 for floats); "
                    "store 8-bit images")


def _as_label_vector(labels: np.ndarray, path: Path, key: str) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{path}: {key} has shape {labels.shape}; expected one integer label per image "
                        "(multi-label data is not supported)")
    if labels.dtype.kind not in "iub":
        if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
            return labels.astype(np.int64)
        raise DataError(f"{path}: {key} has dtype {labels.dtype}; expected integer class indices 0..K-1")
    return labels.astype(np.int64)


def _class_names(explicit: list[str] | None, known: tuple[str, ...] | None, default: list[str] | None,
                 labels: np.ndarray, origin: Path) -> list[str]:
    """Names in label order: --classes, else the known-dataset table, else `default`."""
    needed = int(labels.max()) + 1 if labels.size else 0
    if explicit is not None:
        names = [name.strip() for name in explicit]
        if len(names) < needed or any(not name for name in names) or len(set(names)) != len(names):
            raise DataError(f"--classes gives {names} but {origin} has labels 0..{needed - 1}; "
                            f"pass {needed} distinct names, one per label value, separated by commas")
        return names
    if known is not None:
        return list(known)
    if default is not None and len(default) >= needed:
        return list(default)
    raise DataError(f"cannot tell the class names of {origin} (not a known dataset); pass --classes with "
                    f"{needed} names in label order, e.g. --classes {','.join(f'class{i}' for i in range(needed))}")


def _resized(data: DatasetArrays, size: int | None) -> DatasetArrays:
    if size is None or tuple(data.images.shape[2:]) == (size, size):
        return data
    tensor = TF.resize(torch.from_numpy(data.images), [size, size], antialias=True)
    data.images = tensor.numpy()
    return data


def _read_image(path: Path, size: int, channels: int) -> tuple[np.ndarray, str, bytes | None]:
    """Decode, convert, resize and centre-crop one image; also returns the file's SHA-256 and its
    reading copy (xai_lab.data.squares)."""
    try:
        content = path.read_bytes()
        with Image.open(io.BytesIO(content)) as opened:
            image = opened.convert("L" if channels == 1 else "RGB")
    except UnidentifiedImageError:
        raise DataError(f"cannot read image {path}: its content is not an image format Pillow decodes (PNG, JPEG, "
                        "TIFF, BMP ...), whatever its name says; remove or replace the file") from None
    except (OSError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot read image {path} ({_short(error)}); remove or replace the file") from None
    square = as_channels(np.asarray(image, dtype=np.uint8), channels)
    return model_square(square, size), hashlib.sha256(content).hexdigest(), reading_square_png(square, size)


def _class_folders(root: Path) -> list[str]:
    """The class subfolders of a folder that is not split into train/val/test (DICOM exports)."""
    return _at_least_two(_folder_classes(root), root)


def _at_least_two(class_names: list[str], root: Path) -> list[str]:
    if len(class_names) < 2:
        raise DataError(f"{root} has only one class folder ({class_names[0]}); a classifier needs examples of at "
                        "least two classes")
    return class_names


def _folder_classes(folder: Path) -> list[str]:
    try:
        return find_classes(str(folder))[0]
    except FileNotFoundError:
        raise DataError(f"{folder} has no class subfolders; expected {folder}/<class name>/<image files> "
                        "(torchvision ImageFolder layout)") from None


def file_digests(path: Path) -> tuple[str, str]:
    """(SHA-256, MD5) of a file in one pass: SHA-256 for cards, MD5 for MedMNIST's published sums."""
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()


def _folder_digest(entries: list[tuple[str, str]]) -> str:
    """SHA-256 over sorted (relative path, file SHA-256) pairs: identifies a folder's exact content."""
    digest = hashlib.sha256()
    for relative_path, file_sha256 in sorted(entries):
        digest.update(relative_path.encode() + b"\0" + file_sha256.encode())
    return digest.hexdigest()


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]
