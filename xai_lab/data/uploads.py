"""`read_uploaded_image`: an image file from a browser upload, checked before it is decoded.

Checks, in order, each a `DataError` naming the problem and the fix:
- size on the wire (`MAX_UPLOAD_BYTES`; the served app's ``server.maxUploadSize`` is the same,
  so larger files are refused by the server before they are held in memory);
- the format Pillow finds in the header, not the file name (PNG or JPEG only);
- pixel count against a decompression-bomb limit: Pillow's `DecompressionBombWarning` and
  `DecompressionBombError` are raised as errors here (`MAX_PIXELS`, far below Pillow's own
  default of ~179 M pixels, because a radiograph for a 224-px model needs no more);
- a full decode (`load`), so a truncated file fails here and not later in a page.

Pixel values reach the model's [0, 1] range by the image's mode: 8-bit images (grey, colour,
palette, with or without alpha) are divided by 255; 16-bit, 32-bit integer and float images
(radiographs exported from a viewer, often 12 bits in a 16-bit PNG) are windowed to their own
minimum and maximum, as a viewer does without a stored window. Pillow's plain ``convert("L")``
would instead clip every 16-bit value above 255 to white.
"""

from __future__ import annotations

import io
import threading
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from xai_lab.data.upload_limits import MAX_UPLOAD_BYTES
from xai_lab.errors import DataError

MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG")
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # more than 8 bits per pixel
# Image.MAX_IMAGE_PIXELS is process-wide: uploads from concurrent sessions take turns changing it.
_PIXEL_LIMIT_LOCK = threading.Lock()


def read_uploaded_image(data: bytes, size: int, channels: int = 1) -> torch.Tensor:
    """The upload as a (channels, size, size) float tensor in [0, 1], as the model reads images."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"The file is {len(data) / 1e6:.1f} MB; upload a PNG or JPEG under "
                        f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
    image = _open_checked(data)
    if image.mode in WIDE_MODES:
        array = _windowed(image, size)
        tensor = torch.from_numpy(array)[None]
        return tensor if channels == 1 else tensor.expand(3, -1, -1).contiguous()
    image = image.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array)
    return tensor[None] if channels == 1 else tensor.permute(2, 0, 1).contiguous()


def _windowed(image: Image.Image, size: int) -> np.ndarray:
    """A wide-range grey image resized as floats, then mapped from its own min..max to [0, 1]."""
    values = np.asarray(image, dtype=np.float32)
    if not np.isfinite(values).all():
        raise DataError("The image holds values that are not numbers (NaN or infinity); export it again as an "
                        "8- or 16-bit PNG.")
    resized = np.asarray(Image.fromarray(values, mode="F").resize((size, size), Image.Resampling.LANCZOS))
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros((size, size), dtype=np.float32)
    return np.clip((resized - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _open_checked(data: bytes) -> Image.Image:
    with _PIXEL_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                if image.format not in FORMATS:
                    raise DataError(f"The file is a {image.format or 'file of unknown type'}, not a PNG or JPEG "
                                    "image; save it as PNG or JPEG and upload it again.")
                image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise DataError(f"The image has more than {MAX_PIXELS:,} pixels (a huge scan, or a damaged or hostile "
                            "file); upload a smaller PNG or JPEG.") from None
        except UnidentifiedImageError:
            raise DataError("The file is not a PNG or JPEG image that can be opened; upload a PNG or JPEG "
                            "image.") from None
        except OSError as error:
            raise DataError(f"The image file is damaged ({error}); upload an intact PNG or JPEG.") from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    return image
