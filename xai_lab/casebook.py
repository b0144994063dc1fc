"""One case as a reader sees it: the image at display size, the truth, and the AI's calibrated advice.

Pages (the study UI, the trainer page) and notebooks use this instead of touching tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import binary_erosion

from xai_lab.data.records import ImageDataset
from xai_lab.model.network import ImageClassifier

OUTLINE_RGB = (255, 176, 0)  # amber: visible on grayscale and distinct for colour-blind readers


@dataclass(frozen=True)
class CaseView:
    case_id: str
    image: Image.Image  # RGB at display size
    true_label: str
    ai_label: str | None
    ai_confidence: float | None  # calibrated probability of the AI's label, 0-1
    probabilities: dict[str, float] | None
    metadata: dict[str, object]


def view_case(dataset: ImageDataset, split: str, index: int, model: ImageClassifier | None = None,
              display_size: int = 448, outline_lesion: bool = False) -> CaseView:
    """The case at `index` of `split`, upscaled smoothly, optionally with its lesion mask outlined."""
    part = dataset[split]
    if not 0 <= index < len(part):
        raise IndexError(f"case index {index} is outside 0..{len(part) - 1} of the {split} split")
    image = to_display_image(part.images[index], display_size)
    if outline_lesion and part.masks is not None and bool(part.masks[index].any()):
        image = draw_outline(image, part.masks[index].numpy())
    probabilities = ai_label = ai_confidence = None
    if model is not None:
        with torch.no_grad():
            probs = model.predict_proba(part.images[index:index + 1])
        decided = int(model.decide(probs)[0])
        probabilities = {name: float(p) for name, p in zip(dataset.class_names, probs[0], strict=True)}
        ai_label, ai_confidence = dataset.class_names[decided], float(probs[0, decided])
    metadata = {key: (column[index].item() if hasattr(column[index], "item") else column[index])
                for key, column in part.metadata.items()}
    return CaseView(part.case_ids[index], image, dataset.class_names[int(part.labels[index])], ai_label,
                    ai_confidence, probabilities, metadata)


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
