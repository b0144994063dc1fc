"""Test-only: small DICOM Part 10 files written with pydicom, as a modality would store them."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)


def write_dicom(path: Path, stored: np.ndarray, *, photometric: str = "MONOCHROME2", bits: int = 12,
                window: tuple[float, float] | None = None, rescale: tuple[float, float] | None = None,
                spacing: tuple[float, float] | None = (0.2, 0.2), patient_id: str = "anon-1",
                identifying: dict[str, str] | None = None) -> Path:
    """A single-frame grayscale image; `rescale` is (slope, intercept), `window` (centre, width)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", patient_id
    ds.PatientIdentityRemoved = "YES"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    if spacing is not None:
        ds.ImagerPixelSpacing = list(spacing)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    for keyword, value in (identifying or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = stored.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def radiograph_like(rng: np.random.Generator, lesion: bool, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """12-bit noise with a bright blob in the upper left for 'lesion' (learnable in a few epochs)."""
    image = rng.normal(1500, 120, size=shape)
    if lesion:
        image[4:16, 4:16] += 1800
    return np.clip(image, 0, 4095).astype(np.uint16)


def dicom_tree(root: Path, per_class: int = 40, images_per_patient: int = 2, seed: int = 0) -> Path:
    """root/<class>/<patient>/<study>/IMnnnn (no extension, as PACS exports do), windowed 12-bit files."""
    rng = np.random.default_rng(seed)
    for label in ("lesion", "normal"):
        for index in range(per_class):
            patient = f"{label}-{index // images_per_patient:03d}"
            write_dicom(root / label / patient / "study1" / f"IM{index:04d}", radiograph_like(rng, label == "lesion"),
                        window=(2000.0, 3000.0), patient_id=f"anon-{patient}")
    return root


def write_bomb(path: Path, kind: str, side: int = 8192) -> Path:
    """A file whose header claims a `side` x `side` 16-bit image in very few bytes on disk:
    ``deflated`` (the whole dataset zlib-deflated, PS3.5 A.5: ~130 kB for 8192^2) or ``rle``
    (RLE Lossless replicate runs of zeros, two byte planes of ~1 MB)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientIdentityRemoved = "DX", "anon-bomb", "YES"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if kind == "deflated":
        meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.PixelData = bytes(side * side * 2)
    else:
        meta.TransferSyntaxUID = RLELossless
        # one replicate run (-127: the next byte 128 times) per 128 bytes of each of the two byte planes
        plane = b"\x81\x00" * (side * side // 128)
        header = struct.pack("<16L", 2, 64, 64 + len(plane), *([0] * 13))
        ds.PixelData = encapsulate([header + plane + plane])
        ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def with_raw_value(path: Path, written: str, raw: str) -> Path:
    """Replace the text `written` (a value written by `write_dicom`) by `raw` of the same length in the
    file's bytes: values pydicom refuses to write, as a badly behaved modality stores them."""
    content = path.read_bytes()
    assert len(written) == len(raw) and content.count(written.encode()) == 1
    path.write_bytes(content.replace(written.encode(), raw.encode()))
    return path
