"""`StudyMedia`: the pictures of a prepared study - radiographs and precomputed overlays - as PNG bytes.

    media = StudyMedia.open(case_set)
    media.image_png("case-0042")                          # the radiograph, large and smooth
    media.overlay_png("case-0042", "gradcam", target=1)   # from the explanation cache, or None

The study UI only reads: overlays were computed by `prepare_study` into the model's explanation
cache, so a participant never waits for a saliency method and every participant sees the same
bytes for the same case. A missing or damaged cache entry is reported as None (the UI then says
the map is unavailable) rather than computed on the fly with possibly different settings.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from xai_lab.casebook import to_display_image
from xai_lab.data.records import ImageDataset
from xai_lab.data.storage import load_dataset
from xai_lab.errors import ConfigError
from xai_lab.explain.cache import ExplanationCache
from xai_lab.explain.precompute import cache_settings, locate_cases
from xai_lab.model.storage import read_model_card, resolve_model_dir
from xai_lab.paths import explanation_cache_dir
from xai_lab.study.cases import CaseSet

DISPLAY_SIZE = 512  # the overlays are rendered at 512 px; the radiograph matches them


@dataclass
class StudyMedia:
    dataset: ImageDataset
    cache: ExplanationCache
    locations: dict[str, tuple[str, int]]  # case id -> (split, index)

    @classmethod
    def open(cls, case_set: CaseSet) -> StudyMedia:
        dataset = load_dataset(case_set.dataset)
        if case_set.dataset_sha256 and dataset.card.content_sha256 != case_set.dataset_sha256:
            raise ConfigError(f"dataset {case_set.dataset!r} changed since study {case_set.study_id!r} was prepared; "
                              "prepare the study again under a new id")
        card = read_model_card(resolve_model_dir(case_set.model))
        ids = [case.case_id for case in (*case_set.cases, *case_set.practice, *case_set.attention)]
        locations = dict(zip(ids, locate_cases(dataset, ids), strict=True))
        return cls(dataset, ExplanationCache(explanation_cache_dir(case_set.model), card), locations)

    def image_png(self, case_id: str, display_size: int = DISPLAY_SIZE) -> bytes:
        split, index = self._where(case_id)
        return _png(to_display_image(self.dataset[split].images[index], display_size))

    def overlay_png(self, case_id: str, method: str, target: int | None = None) -> bytes | None:
        self._where(case_id)
        entry = self.cache.load_explanation(case_id, method, cache_settings(method, target=target))
        return None if entry is None else entry.overlay_png

    def _where(self, case_id: str) -> tuple[str, int]:
        try:
            return self.locations[case_id]
        except KeyError:
            raise ConfigError(f"case {case_id!r} is not part of this study's case set") from None


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
