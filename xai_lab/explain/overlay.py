"""Overlays a clinician can read: the radiograph stays visible, the map says where and how much.

    render_overlay(image, attribution)                 # positive evidence, viridis, 512 px
    render_overlay(image, attribution, mode="signed")  # for / against, purple-orange
    render_overlay(image, attribution, confidence=0.55, min_confidence=0.7)  # map withheld
    render_look(image, attribution, "contour")         # a study look by name (explain/looks.py)

Choices, and why:
- Opacity follows the attribution: where the map is ~0 the radiograph shows through
  unchanged, so the overlay never hides anatomy the map says nothing about.
- Values are clipped at a high percentile of |attribution| (default 99th) before scaling, so
  one extreme pixel cannot wash out the rest of the map.
- Colour-blind-safe perceptually uniform colormaps: viridis for one-sided maps, PuOr (a
  ColorBrewer diverging map safe for the common colour-vision deficiencies) for signed maps.
- The map is upsampled bicubically as a float field before colouring (no blocky pixels); the
  radiograph with Lanczos, as every case view in the lab (`xai_lab.data.display.to_display_image`).
- Studies default to the ``contour`` look (`render_look`, `looks.py`): the map's top region
  outlined and evenly tinted well below opaque, nothing elsewhere, because readers must still see
  the lesion (or the mimic) under the map to check the AI. An even tint keeps a fixed share of
  every local contrast and adds no structure of its own; a graded tint would paint its own blobs.
- A colour bar with words, not only numbers, because clinicians read "more influence", not
  attribution units; the top-k% region can be outlined so the eye finds the focus.
- Saporta et al. (2022) show maps only when the model is confident; `min_confidence` does
  that and says so on the image rather than silently showing a bare radiograph.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import binary_erosion, gaussian_filter

from xai_lab.data.display import draw_outline, to_display_image
from xai_lab.errors import ExplainError
from xai_lab.explain.looks import CONTOUR_MAX_ALPHA, CONTOUR_TOP_PERCENT, OVERLAY_LOOKS

Mode = Literal["positive", "signed", "absolute"]
COLORMAPS = {"positive": "viridis", "signed": "PuOr_r", "absolute": "viridis"}
OUTLINE_COLOUR = (255, 255, 255)
CONTOUR_TINT = (253, 231, 37)  # viridis' top colour: "most influence", as on every heat map here
SIDE_BY_SIDE_GAP = 12  # px of white between the plain radiograph and the overlay
BAR_WIDTH = 0.09  # colour bar panel width as a share of the display size


def render_overlay(image: np.ndarray | torch.Tensor, attribution: np.ndarray | torch.Tensor, *,
                   display_size: int = 512, alpha: float = 0.6, clip_percentile: float = 99.0,
                   mode: Mode = "positive", colormap: str | None = None, top_k_percent: float | None = None,
                   legend: bool = True, confidence: float | None = None,
                   min_confidence: float | None = None, outline_mask: np.ndarray | None = None) -> Image.Image:
    """The radiograph with the attribution blended over it, as an RGB PIL image.

    image: (H, W) or (C, H, W) in [0, 1] (colour images are shown in grey);
    attribution: (h, w), any resolution (resampled to the image); the image is shown at
    `display_size` px square plus, with `legend`, a colour bar on the right; `outline_mask`
    (h, w booleans, e.g. the true lesion) is outlined in amber on the image, not on the bar.
    """
    base = _grey(image)
    field = _as_array(attribution, "attribution")
    _check_options(alpha, clip_percentile, mode, top_k_percent, field)
    radiograph = to_display_image(torch.from_numpy(base)[None], display_size)
    if confidence is not None and min_confidence is not None and confidence < min_confidence:
        return _withheld(radiograph, confidence, min_confidence, legend)
    resampled = _resample(field, display_size)
    scaled = _scale(resampled, mode, clip_percentile)
    cmap = colormaps[colormap or COLORMAPS[mode]]
    colour = cmap((scaled + 1) / 2 if mode == "signed" else scaled)[..., :3]
    weight = alpha * (np.abs(scaled) if mode == "signed" else scaled)[..., None]
    blended = _blend(radiograph, weight, colour)
    if top_k_percent is not None:
        blended = draw_outline(blended, _top_region(resampled, mode, top_k_percent), OUTLINE_COLOUR)
    if outline_mask is not None and np.asarray(outline_mask).any():
        blended = draw_outline(blended, np.asarray(outline_mask))
    return _with_colour_bar(blended, cmap, mode) if legend else blended


def _grey(image: np.ndarray | torch.Tensor) -> np.ndarray:
    pixels = _as_array(image, "image")
    if pixels.ndim == 3:
        pixels = pixels.mean(axis=0)
    if pixels.ndim != 2:
        raise ExplainError(f"image must be H x W or C x H x W, got shape {pixels.shape}")
    return pixels


def _as_array(values: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    array = np.squeeze(array.astype(np.float32))
    if not np.all(np.isfinite(array)):
        raise ExplainError(f"{what} contains NaN or infinite values; recompute it")
    return array


def _check_options(alpha: float, clip_percentile: float, mode: str, top_k: float | None, field: np.ndarray) -> None:
    if field.ndim != 2:
        raise ExplainError(f"attribution must be one H x W map, got shape {field.shape}")
    if not 0 <= alpha <= 1:
        raise ExplainError(f"alpha must be between 0 and 1, got {alpha}")
    if not 50 <= clip_percentile <= 100:
        raise ExplainError(f"clip_percentile must be between 50 and 100, got {clip_percentile}")
    if mode not in COLORMAPS:
        raise ExplainError(f"mode must be one of {', '.join(COLORMAPS)}, got {mode!r}")
    if top_k is not None and not 0 < top_k < 100:
        raise ExplainError(f"top_k_percent must be between 0 and 100, got {top_k}")


def _resample(field: np.ndarray, size: int) -> np.ndarray:
    tensor = torch.from_numpy(field)[None, None]
    return torch.nn.functional.interpolate(tensor, size=(size, size), mode="bicubic", align_corners=False)[0, 0].numpy()


def _scale(field: np.ndarray, mode: Mode, clip_percentile: float) -> np.ndarray:
    """positive/absolute -> [0, 1]; signed -> [-1, 1]; clipped at the percentile of |values|."""
    values = np.abs(field) if mode == "absolute" else field
    if mode == "positive":
        values = np.clip(values, 0, None)
    ceiling = float(np.percentile(np.abs(values), clip_percentile))
    if ceiling <= 0:
        return np.zeros_like(values)
    low = -1.0 if mode == "signed" else 0.0
    return np.clip(values / ceiling, low, 1.0)


def render_look(image: np.ndarray | torch.Tensor, attribution: np.ndarray | torch.Tensor, look: str, *,
                display_size: int = 512) -> Image.Image:
    """The map drawn in one of the study looks of `looks.OVERLAY_LOOKS` (positive evidence), as a
    picture: the radiograph with `render_layer` on top (beside the plain radiograph, side by side)."""
    if look == "heatmap":
        return render_overlay(image, attribution, display_size=display_size, alpha=0.6)
    layer = render_layer(attribution, look, display_size=display_size)
    plain = to_display_image(torch.from_numpy(_grey(image))[None], display_size)
    with_map = Image.alpha_composite(plain.convert("RGBA"), layer).convert("RGB")
    if look == "contour":
        return with_map
    panel = Image.new("RGB", (2 * display_size + SIDE_BY_SIDE_GAP, display_size), "white")
    panel.paste(plain, (0, 0))
    panel.paste(with_map, (display_size + SIDE_BY_SIDE_GAP, 0))
    return panel


def render_layer(attribution: np.ndarray | torch.Tensor, look: str, *, display_size: int = 512) -> Image.Image:
    """The map alone, as an RGBA layer that is transparent wherever the look draws nothing: for a
    viewer that draws (and windows) the radiograph itself and lays the map on top."""
    if look not in OVERLAY_LOOKS:
        raise ExplainError(f"overlay look must be one of {', '.join(OVERLAY_LOOKS)}, got {look!r}")
    field = _resample(_as_array(attribution, "attribution"), display_size)
    if look == "heatmap":
        scaled = _scale(field, "positive", 99.0)
        colour = colormaps[COLORMAPS["positive"]](scaled)[..., :3]
        return _rgba(colour, 0.6 * scaled)
    region = _top_region(field, "positive", CONTOUR_TOP_PERCENT)
    edge = region & ~binary_erosion(region, iterations=2)  # the outline, two display pixels wide, opaque
    colour = np.broadcast_to(np.array(CONTOUR_TINT, dtype=np.float32) / 255, (*region.shape, 3))
    return _rgba(colour, np.where(edge, 1.0, CONTOUR_MAX_ALPHA * region))


def _rgba(colour: np.ndarray, alpha: np.ndarray) -> Image.Image:
    return Image.fromarray(np.uint8(np.round(np.dstack([colour, alpha]) * 255)), mode="RGBA")


def _blend(radiograph: Image.Image, weight: np.ndarray, colour: np.ndarray) -> Image.Image:
    rgb = np.asarray(radiograph, dtype=np.float32) / 255
    return Image.fromarray(np.uint8(np.clip((1 - weight) * rgb + weight * colour, 0, 1) * 255))


def _top_region(field: np.ndarray, mode: Mode, top_k_percent: float) -> np.ndarray:
    values = np.abs(field) if mode != "positive" else field
    # smoothed over ~1% of the width first, so a noisy map (saliency, IG) gets one calm outline
    values = gaussian_filter(values, sigma=max(1.0, field.shape[0] / 100))
    # "> 0" keeps a mostly-zero map (Grad-CAM after ReLU) from outlining everything
    return (values >= np.percentile(values, 100 - top_k_percent)) & (values > 0)


def _with_colour_bar(picture: Image.Image, cmap, mode: Mode) -> Image.Image:
    size = picture.height
    width = max(40, int(BAR_WIDTH * size))
    panel = Image.new("RGB", (picture.width + width, size), (255, 255, 255))
    panel.paste(picture, (0, 0))
    margin = size // 10
    ramp = np.linspace(1, 0, size - 2 * margin)
    colours = np.uint8(cmap(ramp)[..., :3] * 255)
    bar = np.repeat(colours[:, None, :], width // 3, axis=1)
    panel.paste(Image.fromarray(bar), (picture.width + width // 3, margin))
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default(size=max(10, size // 40))
    top, bottom = ("for", "against") if mode == "signed" else ("more", "less")
    draw.text((picture.width + width // 2, margin - 4), top, fill=(0, 0, 0), font=font, anchor="md")
    draw.text((picture.width + width // 2, size - margin + 4), bottom, fill=(0, 0, 0), font=font, anchor="ma")
    return panel


def _withheld(radiograph: Image.Image, confidence: float, min_confidence: float, legend: bool) -> Image.Image:
    picture = radiograph.copy()
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(10, picture.height // 32))
    text = f"map not shown: AI confidence {confidence:.0%} is below {min_confidence:.0%}"
    draw.rectangle((0, picture.height - picture.height // 14, picture.width, picture.height), fill=(0, 0, 0))
    draw.text((picture.width // 2, picture.height - picture.height // 28), text, fill=(255, 255, 255), font=font,
              anchor="mm")
    if not legend:
        return picture
    panel = Image.new("RGB", (picture.width + max(40, int(BAR_WIDTH * picture.height)), picture.height), "white")
    panel.paste(picture, (0, 0))
    return panel
