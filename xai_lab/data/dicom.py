"""DICOM folders as hospitals hold them: ``root/<class>/**/<file>``, any depth, any file name.

pydicom reads each file; the stored values become display values the way a DICOM viewer makes
them (PS3.3 C.11): the Modality LUT (rescale slope/intercept) first, then the file's own VOI
(window centre/width or VOI LUT sequence), then MONOCHROME1 is inverted so that bright always
means dense. Files without a window are scaled from their minimum to their maximum, and the
card says so. Nothing identifying is copied: only pixels, pixel spacing, the window, the
photometric interpretation and a one-way hash of the Patient ID (to keep a patient's images in
one split). Files that still carry identifying values are refused unless the caller says the
data may be identifiable (`allow_identifiable`).

Files are untrusted input: the image size is checked from the header before any pixel is
decoded (`MAX_IMAGE_PIXELS`, `MAX_DECODED_BYTES`; a deflated file's inflated size is counted in
a stream first), window and rescale values must be finite numbers that make an image, and the
display values are computed a block of rows at a time, so memory stays near the decoded size.
"""

from __future__ import annotations

import hashlib
import io
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import DeflatedExplicitVRLittleEndian
from torchvision.datasets.folder import IMG_EXTENSIONS

from xai_lab.data.records import DatasetArrays
from xai_lab.data.splitting import check_splittable, grouped_stratified_split, stratified_split
from xai_lab.data.squares import as_channels, model_square, reading_square_png
from xai_lab.errors import DataError

# PS3.15 Annex E Basic Application Level Confidentiality Profile: the attributes among those it
# removes or replaces that name or locate a person. A de-identified file has them absent or
# empty. Patient ID is not here: de-identifiers replace it with a pseudonym, which the import
# hashes and uses only to keep one patient's images in one split.
IDENTIFYING_KEYWORDS: tuple[str, ...] = (
    "PatientName", "PatientBirthDate", "PatientBirthTime", "PatientAddress", "PatientTelephoneNumbers",
    "PatientMotherBirthName", "PatientBirthName", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "MedicalRecordLocator", "MilitaryRank", "PatientInsurancePlanCodeSequence",
    "ReferringPhysicianName", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    "InstitutionName", "InstitutionAddress", "AccessionNumber",
)
DICOM_MAGIC_OFFSET = 128
# 6000 x 6000: above every radiography and mammography detector; a file claiming more is refused
# from its header (a few hundred bytes of deflate or RLE can claim gigabytes).
MAX_IMAGE_PIXELS = 36_000_000
MAX_DECODED_BYTES = 112 * 1024 * 1024  # those pixels as 8-bit RGB (108 MB) or 16-bit grey (72 MB)
MAX_HEADER_BYTES = 16 * 1024 * 1024  # attributes besides the pixels: far more than any modality writes
BLOCK_PIXELS = 1 << 20  # display values are computed this many pixels at a time (float64 in pydicom)
# Inputs far beyond any stored value: through the file's VOI they give its output range (LINEAR,
# LINEAR_EXACT, SIGMOID and LUT sequences all saturate at both ends).
_FAR = 1e9


@dataclass(frozen=True)
class DicomImage:
    """One decoded file: display pixels (uint8, C x H x W) and what a reader of the card needs."""

    pixels: np.ndarray
    reading_png: bytes | None  # the same square at the file's resolution (up to 1024 px), for the viewer
    spacing_mm: tuple[float, float]  # (row, column) at the stored resolution; NaN where absent
    window: tuple[float, float]  # (centre, width) in modality units; the min-max window if the file has none
    window_from_file: bool
    display_spacing_mm: float  # row spacing after the resize to the dataset's size; NaN where unknown
    photometric: str
    patient_hash: str
    sop_instance_uid: str
    file_sha256: str


@dataclass(frozen=True)
class DicomTree:
    """A whole folder, read: what `importers.read_dicom_folder` turns into `ImportedData`."""

    arrays: DatasetArrays
    class_names: list[str]
    source: dict
    split_method: str
    notes: list[str]
    files: list[tuple[str, str]]  # (path relative to the folder, SHA-256) of every file read
    reading_copies: dict[str, bytes]  # case id -> PNG at the file's resolution (xai_lab.data.squares)


def looks_like_dicom(path: Path) -> bool:
    """A DICOM Part 10 file: 'DICM' after the 128-byte preamble (file names and extensions vary)."""
    try:
        with path.open("rb") as handle:
            handle.seek(DICOM_MAGIC_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def folder_has_dicom(root: Path) -> bool:
    """True at the first DICOM file; image files (by extension) are never opened, so telling an
    ordinary image folder apart costs a directory listing, not a read of every file."""
    return any(looks_like_dicom(path) for path in root.rglob("*")
               if path.is_file() and not path.name.lower().endswith(IMG_EXTENSIONS))


def read_dicom_tree(root: Path, class_names: list[str], *, size: int, seed: int, channels: int,
                    allow_identifiable: bool) -> DicomTree:
    """Read ``root/<class>/**/<dicom file>``. Case ids are ``dcm-`` plus a hash of the SOP Instance UID:
    folder names in hospital exports often carry patient names, so paths never become ids."""
    files, labels = _dicom_files(root, class_names)
    decoded = [read_dicom_image(path, size, channels, allow_identifiable) for path in files]
    label_array = np.array(labels, dtype=np.int64)
    groups = np.array([image.patient_hash or f"file-{i}" for i, image in enumerate(decoded)])
    check_splittable(label_array, root)
    patients = len({image.patient_hash for image in decoded if image.patient_hash})
    repeated = len(np.unique(groups)) < len(groups)
    splits = grouped_stratified_split(label_array, groups, seed) if repeated else stratified_split(label_array, seed)
    arrays = DatasetArrays(images=np.stack([image.pixels for image in decoded]), labels=label_array, splits=splits,
                           case_ids=np.array([_case_id(image) for image in decoded]),
                           metadata=_metadata(decoded, groups))
    source = {"kind": "dicom_folder", "folder": str(root.resolve()), "files": len(files), "patients": patients,
              "pixel_spacing_mm": _spacing_summary(decoded, size),
              "window": _window_summary(decoded), "identifiable_allowed": allow_identifiable}
    split_method = (f"stratified by label, grouped by patient (seed {seed}): {patients} patients, none in two "
                    "splits" if repeated else f"stratified by label (seed {seed}); each patient has one image "
                    "(or no Patient ID), so images are split as independent")
    notes = [f"DICOM pixels through the Modality LUT and the file's VOI (window or VOI LUT), MONOCHROME1 "
             f"inverted, resized on the shorter side to {size} px and centre-cropped to {size}x{size}"]
    entries = [(str(path.relative_to(root)), image.file_sha256) for path, image in zip(files, decoded, strict=True)]
    copies = {case_id: image.reading_png for case_id, image in zip(arrays.case_ids.tolist(), decoded, strict=True)
              if image.reading_png is not None}
    return DicomTree(arrays, class_names, source, split_method, notes, entries, copies)


def read_dicom_image(path: Path, size: int, channels: int, allow_identifiable: bool = False) -> DicomImage:
    """Read one file once: refuse it if it identifies a patient (unless allowed), then decode it into
    display pixels. Every way it can fail is one DataError naming the file."""
    content = _read_bytes(path)
    _check_inflated_size(path, content)
    dataset = _read(path, content)
    found = [] if allow_identifiable else identifying_values(dataset)
    if found:
        raise DataError(f"{path} still carries identifying data ({', '.join(found)}); de-identify the files "
                        "first (DICOM PS3.15 basic profile), or pass --allow-identifiable if your approval "
                        "covers identifiable images (only pixels, spacing and window are imported)")
    _check_image_size(path, dataset)
    _check_display_values(path, dataset)
    try:
        stored = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - pydicom raises many types for unsupported pixel data
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        raise DataError(f"cannot decode the pixels of {path} (transfer syntax {syntax.name if syntax else 'unknown'}: "
                        f"{str(error).splitlines()[0][:120]}); export the images uncompressed, or install "
                        "pylibjpeg with its plugins for compressed files") from None
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("MONOCHROME"):
        display, window, from_file = _monochrome_display(stored, dataset)
    else:
        display, window, from_file = _colour_display(stored), (127.5, 255.0), False
    square = as_channels(display, channels)
    spacing = _spacing(dataset)
    shorter = min(display.shape[0], display.shape[1])
    return DicomImage(pixels=model_square(square, size), reading_png=reading_square_png(square, size),
                      spacing_mm=spacing, window=window, window_from_file=from_file,
                      display_spacing_mm=spacing[0] * shorter / size, photometric=photometric,
                      patient_hash=_patient_hash(dataset), sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
                      file_sha256=hashlib.sha256(content).hexdigest())


def identifying_values(dataset: pydicom.Dataset) -> list[str]:
    """Keywords of identifying attributes that hold a value; plus burned-in text, which no tag removal fixes."""
    present = [keyword for keyword in IDENTIFYING_KEYWORDS
               if keyword in dataset and str(dataset.data_element(keyword).value or "").strip()]
    if str(dataset.get("BurnedInAnnotation", "")).upper() == "YES":
        present.append("BurnedInAnnotation=YES")
    return present


def _read_bytes(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_DECODED_BYTES + MAX_HEADER_BYTES:
            raise DataError(f"{path} is {path.stat().st_size / 2**20:.0f} MB, larger than any single image xai-lab "
                            f"reads ({(MAX_DECODED_BYTES + MAX_HEADER_BYTES) / 2**20:.0f} MB); export one "
                            "image per file, at most 6000 x 6000 pixels")
        return path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path} ({error.strerror or error}); check its permissions") from None


def _check_inflated_size(path: Path, content: bytes) -> None:
    """A deflated file (PS3.5 A.5) is inflated whole by pydicom: count its inflated size in a stream
    first, keeping nothing, so a few kilobytes that inflate to gigabytes are refused cheaply."""
    start = DICOM_MAGIC_OFFSET + 4
    if content[start:start + 6] != b"\x02\x00\x00\x00UL":  # no meta group length: not deflated as written
        return
    meta_end = start + 12 + int.from_bytes(content[start + 8:start + 12], "little")
    if DeflatedExplicitVRLittleEndian.encode() not in content[start:meta_end]:
        return
    limit = MAX_DECODED_BYTES + MAX_HEADER_BYTES
    inflater, pending, total = zlib.decompressobj(-zlib.MAX_WBITS), content[meta_end:], 0
    try:
        while pending and not inflater.eof:
            total += len(inflater.decompress(pending, 1 << 20))
            pending = inflater.unconsumed_tail
            if total > limit:
                raise DataError(f"{path} inflates to more than {limit / 2**20:.0f} MB, larger than any single "
                                "image xai-lab reads; export one image per file, at most 6000 x 6000 pixels")
    except zlib.error as error:
        raise DataError(f"cannot read DICOM file {path} (its deflated data is damaged: {error}); "
                        "remove or replace the file") from None


def _check_image_size(path: Path, dataset: pydicom.Dataset) -> None:
    """From the header, before anything is decoded: one frame, within the pixel and byte limits."""
    try:
        rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        bits = int(dataset.get("BitsAllocated", 16) or 16)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as error:
        raise DataError(f"{path} has an unreadable image size ({error}); remove or replace the file") from None
    if frames > 1:
        raise DataError(f"{path} holds {frames} frames; xai-lab reads single images, so export one frame per file")
    if rows * columns > MAX_IMAGE_PIXELS:
        raise DataError(f"{path} is {rows} x {columns} pixels, above the limit of {MAX_IMAGE_PIXELS / 1e6:.0f} "
                        "megapixels; export a smaller image (at most 6000 x 6000)")
    if rows * columns * samples * math.ceil(bits / 8) > MAX_DECODED_BYTES:
        raise DataError(f"{path} decodes to {rows * columns * samples * math.ceil(bits / 8) / 2**20:.0f} MB "
                        f"({rows} x {columns}, {samples} samples of {bits} bits), above the limit of "
                        f"{MAX_DECODED_BYTES / 2**20:.0f} MB; export a smaller image")


WINDOW_AND_RESCALE = ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth")


def _check_display_values(path: Path, dataset: pydicom.Dataset) -> None:
    """Window and rescale values that make an image: finite numbers, a non-zero slope, a width of at
    least 1 (PS3.3 C.11.2.1.2; LINEAR_EXACT only needs it positive). One line naming the attribute."""
    fix = "fix the value in the file, or remove it (the image is then shown from its minimum to its maximum)"
    numbers = {}
    for keyword in WINDOW_AND_RESCALE:
        if keyword not in dataset:
            continue
        try:
            value = dataset[keyword].value
            values = [float(v) for v in (value if isinstance(value, pydicom.multival.MultiValue) else [value])]
        except (TypeError, ValueError):
            raw = dataset.get_item(keyword).value
            shown = raw.decode("ascii", "replace").strip() if isinstance(raw, bytes) else raw
            raise DataError(f"{path}: {keyword} is {shown!r}, not a number; {fix}") from None
        if not values or not all(math.isfinite(v) for v in values):
            raise DataError(f"{path}: {keyword} is {values}, not a finite number; {fix}")
        numbers[keyword] = values
    if numbers.get("RescaleSlope", [1.0])[0] == 0:
        raise DataError(f"{path}: RescaleSlope is 0, which makes every pixel the same value; {fix}")
    exact = str(dataset.get("VOILUTFunction", "LINEAR")).upper() == "LINEAR_EXACT"
    narrowest = min(numbers.get("WindowWidth", [1.0]))
    if narrowest <= 0 or (narrowest < 1 and not exact):
        raise DataError(f"{path}: WindowWidth is {narrowest:g}; a window must be at least 1 wide; {fix}")


def _read(path: Path, content: bytes) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(content))
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as error:
        raise DataError(f"cannot read DICOM file {path} ({str(error).splitlines()[0][:120]}); "
                        "remove or replace the file") from None


def _monochrome_display(stored: np.ndarray, dataset: pydicom.Dataset) -> tuple[np.ndarray, tuple[float, float], bool]:
    """Modality LUT, then the file's VOI scaled by its own output range; min-max if it has no VOI.
    A block of rows at a time: pydicom works in float64, so a whole image would cost 8 bytes a pixel
    in every intermediate array."""
    has_voi = "WindowCenter" in dataset or "VOILUTSequence" in dataset
    if has_voi:
        low, high = apply_voi_lut(np.array([-_FAR, _FAR]), dataset, index=0, prefer_lut=True).astype(np.float64)
        window = _file_window(dataset, stored)
    else:
        low, high = _modality_range(stored, dataset)
        window = ((low + high) / 2.0, high - low)
    inverted = str(dataset.PhotometricInterpretation) == "MONOCHROME1"  # stored bright = air: invert
    display = np.empty(stored.shape[:2], dtype=np.uint8)
    for rows in _row_blocks(stored):
        values = apply_modality_lut(stored[rows], dataset)
        shown = apply_voi_lut(values, dataset, index=0, prefer_lut=True) if has_voi else values
        unit = np.clip((np.asarray(shown, dtype=np.float64) - low) / (high - low), 0.0, 1.0) if high != low \
            else np.zeros(shown.shape)
        display[rows] = np.round((1.0 - unit if inverted else unit) * 255)
    return display, window, has_voi


def _row_blocks(stored: np.ndarray) -> list[slice]:
    step = max(1, BLOCK_PIXELS // max(1, stored.shape[1]))
    return [slice(start, start + step) for start in range(0, stored.shape[0], step)]


def _modality_range(stored: np.ndarray, dataset: pydicom.Dataset) -> tuple[float, float]:
    """Lowest and highest value in modality units, a block at a time."""
    ranges = [(float(values.min()), float(values.max()))
              for values in (apply_modality_lut(stored[rows], dataset) for rows in _row_blocks(stored))]
    return min(low for low, _ in ranges), max(high for _, high in ranges)


def _file_window(dataset: pydicom.Dataset, stored: np.ndarray) -> tuple[float, float]:
    """The first window centre/width of the file; for a VOI LUT sequence, the range of values it spans."""
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        return _first_value(dataset.WindowCenter), _first_value(dataset.WindowWidth)
    low, high = _modality_range(stored, dataset)
    return (low + high) / 2.0, high - low


def _first_value(value: object) -> float:
    """Window attributes may hold several windows (VM 1-n); the first is the default view."""
    return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)


def _colour_display(stored: np.ndarray) -> np.ndarray:
    """RGB (pydicom converts YBR to RGB when decoding) as uint8, whatever the stored bit depth."""
    if stored.ndim != 3 or stored.shape[-1] != 3:
        raise DataError(f"colour DICOM pixels have shape {stored.shape}; expected rows x columns x 3")
    if stored.dtype == np.uint8:
        return stored
    peak = float(stored.max()) or 1.0
    return np.round(stored.astype(np.float32) / peak * 255).astype(np.uint8)


def _spacing(dataset: pydicom.Dataset) -> tuple[float, float]:
    """PixelSpacing (at the patient), else ImagerPixelSpacing (at the detector, radiographs); NaN if neither."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = dataset.get(keyword)
        if value is not None and len(value) == 2:
            return float(value[0]), float(value[1])
    return float("nan"), float("nan")


def _case_id(image: DicomImage) -> str:
    """Stable across re-imports (the SOP Instance UID names the image); the file's hash if it has none."""
    basis = image.sop_instance_uid or image.file_sha256
    return f"dcm-{hashlib.sha256(basis.encode()).hexdigest()[:16]}"


def _patient_hash(dataset: pydicom.Dataset) -> str:
    """A one-way hash of Patient ID: groups a patient's images without storing the ID itself."""
    patient_id = str(dataset.get("PatientID", "") or "").strip()
    return hashlib.sha256(patient_id.encode()).hexdigest()[:16] if patient_id else ""


def _dicom_files(root: Path, class_names: list[str]) -> tuple[list[Path], list[int]]:
    files, labels, skipped = [], [], []
    for label, name in enumerate(class_names):
        for path in sorted(p for p in (root / name).rglob("*") if p.is_file() and not p.name.startswith(".")):
            if looks_like_dicom(path):
                files.append(path)
                labels.append(label)
            elif path.name.upper() != "DICOMDIR":
                skipped.append(path)
    if skipped:
        raise DataError(f"{skipped[0]} is not a DICOM file ({len(skipped)} such file(s) under {root}); "
                        "a DICOM folder must hold only DICOM files (and DICOMDIR): move the others out")
    if not files:
        raise DataError(f"{root} has class folders {class_names} but no DICOM files in them")
    return files, labels


def _metadata(decoded: list[DicomImage], groups: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "pixel_spacing_row_mm": np.array([image.spacing_mm[0] for image in decoded]),
        "pixel_spacing_col_mm": np.array([image.spacing_mm[1] for image in decoded]),
        "pixel_spacing_display_mm": np.array([image.display_spacing_mm for image in decoded]),
        "window_center": np.array([image.window[0] for image in decoded]),
        "window_width": np.array([image.window[1] for image in decoded]),
        "window_from_file": np.array([image.window_from_file for image in decoded]),
        "photometric": np.array([image.photometric for image in decoded]),
        "patient_group": groups.astype(str),
        "sop_instance_uid": np.array([image.sop_instance_uid for image in decoded]),
    }


def _spacing_summary(decoded: list[DicomImage], size: int) -> dict:
    rows = np.array([image.spacing_mm[0] for image in decoded])
    known = rows[~np.isnan(rows)]
    if not known.size:
        return {"stored_median": None, "display_median": None, "files_with_spacing": 0}
    shown = np.array([image.display_spacing_mm for image in decoded])
    return {"stored_median": float(np.median(known)), "display_median": float(np.nanmedian(shown)),
            "files_with_spacing": int(known.size),
            "per_image": f"metadata columns pixel_spacing_row_mm, pixel_spacing_col_mm (stored) and "
                         f"pixel_spacing_display_mm (after the resize to {size} px)"}


def _window_summary(decoded: list[DicomImage]) -> dict:
    from_file = sum(image.window_from_file for image in decoded)
    return {"files_with_window": int(from_file), "files_min_max": len(decoded) - int(from_file),
            "center_median": float(np.median([image.window[0] for image in decoded])),
            "width_median": float(np.median([image.window[1] for image in decoded])),
            "per_image": "metadata columns window_center, window_width (modality units)"}
