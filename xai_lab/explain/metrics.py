"""Per-image quality measures of attribution maps: localisation, faithfulness, similarity.

Every function takes maps as (N, H, W) tensors and returns one value per image (NaN where a
measure is undefined for that image, e.g. a map with no positive evidence), so the caller can
average them and put a confidence interval around the mean.

- Localisation against ground-truth lesion masks: the pointing game (Zhang et al., ECCV 2016),
  relevance mass and relevance rank accuracy (Arras et al., Information Fusion 2022).
- Faithfulness: deletion and insertion curves (Petsiuk et al., BMVC 2018). Pixels are moved,
  most relevant first, between the image and a reference; the reference is the image blurred
  with sigma = 5% of its side (`blurred_baseline`), because a black or grey square is itself an
  out-of-distribution object a CNN reacts to, whereas blur removes focal detail and keeps the
  anatomy. The curve is the model's calibrated probability of the explained class.
- Similarity between two maps of the same image (randomisation and repeatability checks):
  Spearman rank correlation and SSIM (Adebayo et al., NeurIPS 2018).

Written here rather than taken from Quantus: the lab needs five small, documented functions
that run batched on the lab's own models, not a framework with its own model wrappers.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from xai_lab.explain.methods import blurred_baseline
from xai_lab.model.network import ImageClassifier

POINTING_TOLERANCE = 15 / 224  # Zhang et al.'s 15 px at 224 px, as a share of the image side
CURVE_STEPS = 24  # points on each deletion/insertion curve besides the start


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: float = POINTING_TOLERANCE) -> np.ndarray:
    """1.0 where the map's maximum lies within `tolerance` x side of the mask, else 0.0."""
    side = maps.shape[-1]
    radius = tolerance * side
    hits = np.zeros(len(maps))
    for i, (attribution, mask) in enumerate(zip(maps, masks, strict=True)):
        flat_peak = int(torch.argmax(attribution))
        peak_y, peak_x = divmod(flat_peak, side)
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(ys) == 0:
            hits[i] = np.nan
            continue
        distance = torch.sqrt((ys - peak_y).float() ** 2 + (xs - peak_x).float() ** 2).min()
        hits[i] = float(distance <= radius)
    return hits


def relevance_mass(maps: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """Share of the positive attribution that falls inside the mask (1.0 = all of it)."""
    positive = maps.clamp(min=0).flatten(1).double()
    inside = (positive * masks.flatten(1)).sum(dim=1)
    total = positive.sum(dim=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total.numpy() > 0, inside.numpy() / total.numpy(), np.nan)


def relevance_rank(maps: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """Share of the K highest-ranked pixels that lie inside the mask, K = the mask's size."""
    values = np.full(len(maps), np.nan)
    for i, (attribution, mask) in enumerate(zip(maps, masks, strict=True)):
        k = int(mask.sum())
        if k == 0:
            continue
        top = torch.topk(attribution.flatten(), k).indices
        values[i] = float(mask.flatten()[top].float().mean())
    return values


def deletion_insertion(model: ImageClassifier, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                       steps: int = CURVE_STEPS, seed: int = 0, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Areas under the deletion and insertion curves, one per image (x axis: share of pixels moved).

    Lower deletion AUC and higher insertion AUC mean a more faithful map. Ties in the ranking
    (Grad-CAM's zeros, say) are broken at random with `seed`, not in raster order, so a flat
    region is not removed top row first.
    """
    reference = blurred_baseline(images)
    order = _ranking(maps, seed)
    deletion = _curve_area(model, images, reference, order, targets, steps, batch_size)
    insertion = _curve_area(model, reference, images, order, targets, steps, batch_size)
    return deletion, insertion


def _ranking(maps: torch.Tensor, seed: int) -> torch.Tensor:
    """Pixel indices per image, most relevant first, ties in random order."""
    flat = maps.flatten(1)
    generator = torch.Generator().manual_seed(seed)
    shuffle = torch.stack([torch.randperm(flat.shape[1], generator=generator) for _ in range(len(flat))])
    shuffled_order = torch.argsort(torch.gather(flat, 1, shuffle), dim=1, descending=True, stable=True)
    return torch.gather(shuffle, 1, shuffled_order)


@torch.no_grad()
def _curve_area(model: ImageClassifier, start: torch.Tensor, end: torch.Tensor, order: torch.Tensor,
                targets: torch.Tensor, steps: int, batch_size: int) -> np.ndarray:
    """Move pixels from `start` to `end` in `steps` equal chunks along `order`; area under p(target)."""
    n, channels = start.shape[:2]
    n_pixels = order.shape[1]
    fractions = torch.linspace(0, 1, steps + 1)
    probabilities = torch.empty(n, steps + 1)
    was_training = model.training
    model.eval()
    for step, fraction in enumerate(fractions):
        count = int(round(float(fraction) * n_pixels))
        moved = torch.zeros(n, n_pixels, dtype=torch.bool)
        moved.scatter_(1, order[:, :count], True)
        moved = moved.view(n, 1, *start.shape[-2:]).expand(-1, channels, -1, -1)
        blend = torch.where(moved, end, start)
        probabilities[:, step] = model.predict_proba(blend, batch_size).gather(1, targets.view(-1, 1)).squeeze(1)
    model.train(was_training)
    return np.trapezoid(probabilities.numpy(), fractions.numpy(), axis=1)


def spearman_similarity(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation between paired maps, per image (NaN when a map is constant)."""
    values = np.full(len(first), np.nan)
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        a_flat, b_flat = a.flatten().numpy(), b.flatten().numpy()
        if np.ptp(a_flat) > 0 and np.ptp(b_flat) > 0:
            values[i] = spearmanr(a_flat, b_flat).statistic
    return values


def ssim_similarity(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    """SSIM between paired maps, each min-max scaled to [0, 1] first (as Adebayo et al. do)."""
    values = np.full(len(first), np.nan)
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        a_unit, b_unit = _unit_range(a.numpy()), _unit_range(b.numpy())
        if a_unit is not None and b_unit is not None:
            values[i] = structural_similarity(a_unit, b_unit, data_range=1.0)
    return values


def _unit_range(values: np.ndarray) -> np.ndarray | None:
    span = float(np.ptp(values))
    return (values - values.min()) / span if span > 0 else None
