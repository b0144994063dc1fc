"""`read_uploaded_image`: an image file from a browser upload, checked before it is decoded.

Checks, in order, each a `DataError` naming the problem and the fix:
- size on the wire (`MAX_UPLOAD_BYTES`) before anything is parsed;
- the format Pillow finds in the header, not the file name (PNG or JPEG only);
- pixel count against a decompression-bomb limit: Pillow's `DecompressionBombWarning` and
  `DecompressionBombError` are raised as errors here (`MAX_PIXELS`, far below Pillow's own
  default of ~179 M pixels, because a radiograph for a 224-px model needs no more);
- a full decode (`load`), so a truncated file fails here and not later in a page.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from xai_lab.errors import DataError

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG")


def read_uploaded_image(data: bytes, size: int, channels: int = 1) -> torch.Tensor:
    """The upload as a (channels, size, size) float tensor in [0, 1], as the model reads images."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"the file is {len(data) / 1e6:.1f} MB; upload a PNG or JPEG under "
                        f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    image = _open_checked(data)
    image = image.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array)
    return tensor[None] if channels == 1 else tensor.permute(2, 0, 1).contiguous()


def _open_checked(data: bytes) -> Image.Image:
    previous = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise DataError(f"the file is {image.format or 'not an image'}; upload a PNG or JPEG image")
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"the image has more than {MAX_PIXELS:,} pixels (a decompression bomb or a huge scan); "
                        "upload a smaller PNG or JPEG") from None
    except UnidentifiedImageError:
        raise DataError("the file is not an image Pillow can read; upload a PNG or JPEG image") from None
    except OSError as error:
        raise DataError(f"the image file is damaged ({error}); upload an intact PNG or JPEG") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    return image
