"""The square of an image the model sees, at two sizes: the model's, and a reader's.

Image folders and DICOM files both keep the centre square (the shorter side, aspect ratio kept).
The model reads it at the dataset's size (e.g. 224 px); a clinician reads the same square at
the file's own resolution, up to `MAX_READING_PX`, so zooming in the study viewer shows real
detail, not an upsampled thumbnail. Saliency maps are drawn over that square at any size.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

MAX_READING_PX = 1024
READING_FOLDER = "reading"  # data/<name>/reading/<hash of the case id>.png


def as_channels(pixels: np.ndarray, channels: int) -> torch.Tensor:
    """uint8 H x W or H x W x 3 -> C x H x W with the dataset's channels (grey by luminance)."""
    tensor = torch.from_numpy(np.array(pixels))  # a copy: PIL arrays are read-only
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    if channels == 1 and tensor.shape[0] == 3:
        return TF.rgb_to_grayscale(tensor)
    if channels == 3 and tensor.shape[0] == 1:
        return tensor.expand(3, -1, -1)
    return tensor


def model_square(image: torch.Tensor, size: int) -> np.ndarray:
    """uint8 C x size x size: the shorter side resized to `size`, then the centre square."""
    return TF.center_crop(TF.resize(image, [size], antialias=True), [size, size]).contiguous().numpy()


def reading_square_png(image: torch.Tensor, model_size: int) -> bytes | None:
    """The same square at its own resolution (at most `MAX_READING_PX`) as PNG, or None when it is
    no larger than what the dataset stores anyway."""
    side = min(image.shape[-2:])
    if side <= model_size:
        return None
    square = TF.center_crop(image, [side, side])
    if side > MAX_READING_PX:
        square = TF.resize(square, [MAX_READING_PX, MAX_READING_PX], antialias=True)
    array = square.contiguous().numpy()
    picture = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def reading_copy_path(dataset_folder: Path, case_id: str) -> Path:
    """Where a case's reading copy lives: named by a hash, since image-folder case ids are paths."""
    return dataset_folder / READING_FOLDER / f"{hashlib.sha256(case_id.encode()).hexdigest()[:24]}.png"
