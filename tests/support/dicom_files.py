"""Test-only: small DICOM Part 10 files written with pydicom, as a modality would store them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


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
