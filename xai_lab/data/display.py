"""An image as a reader sees it: upscaled smoothly to display size, optionally with a mask outlined.

Every case view in the lab (study media, overlays, the trainer page) goes through these, so the
radiograph looks the same everywhere.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import binary_erosion

OUTLINE_RGB = (255, 176, 0)  # amber: visible on grayscale and distinct for colour-blind readers


def to_display_image(pixels: torch.Tensor, display_size: int) -> Image.Image:
    """C x H x W floats in [0, 1] -> RGB PIL image, upscaled with Lanczos (smooth, not blocky)."""
    array = (pixels.clamp(0, 1) * 255).round().byte().numpy()
    array = np.repeat(array, 3, axis=0) if array.shape[0] == 1 else array
    image = Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)), mode="RGB")
    return image.resize((display_size, display_size), Image.Resampling.LANCZOS)


def draw_outline(image: Image.Image, mask: np.ndarray, colour: tuple[int, int, int] = OUTLINE_RGB) -> Image.Image:
    """Draw the boundary of `mask` (H x W) on `image` (any size), two display pixels wide."""
    scaled = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)) > 0
    edge = scaled & ~binary_erosion(scaled, iterations=2)
    pixels = np.array(image)
    pixels[edge] = colour
    return Image.fromarray(pixels)
