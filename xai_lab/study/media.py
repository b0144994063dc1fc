"""`StudyMedia`: the pictures of a prepared study - radiographs and precomputed overlays - as PNG bytes.

    media = StudyMedia.open(case_set)
    media.image_png("case-0042")                          # the radiograph, large and smooth
    media.reading_png("case-0042")                        # grey, native pixels: the viewer windows it
    media.layer_png("case-0042", look="contour")          # the case's cached map alone (RGBA), or None

The study UI only reads: maps were computed by `prepare_study` into the model's explanation
cache, under the request the case set records (`CaseSet.explanation_request`), so a
participant never waits for a saliency method and every participant sees the same bytes for
the same case. A missing or damaged cache entry is reported as None (the UI then says
the map is unavailable) rather than computed on the fly with possibly different settings.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from xai_lab.data.display import to_display_image
from xai_lab.data.records import ImageDataset
from xai_lab.data.squares import MAX_READING_PX, reading_copy_path
from xai_lab.data.storage import load_dataset
from xai_lab.errors import ConfigError
from xai_lab.explain.cache import ExplanationCache
from xai_lab.explain.overlay import render_layer
from xai_lab.explain.precompute import locate_cases
from xai_lab.model.card import read_model_card, resolve_model_dir
from xai_lab.paths import explanation_cache_dir
from xai_lab.study.cases import CaseSet
from xai_lab.study.factors import OWN_MAP

DISPLAY_SIZE = 512  # the overlays are rendered at 512 px; the radiograph matches them


@dataclass
class StudyMedia:
    dataset: ImageDataset
    cache: ExplanationCache
    case_set: CaseSet
    locations: dict[str, tuple[str, int]]  # case id -> (split, index)

    def __post_init__(self) -> None:
        # the cases that show a map (trials and practice), by id: looked up on every map request
        self.mapped_cases = {case.case_id: case for case in (*self.case_set.cases, *self.case_set.practice)}
        self.caches = {self.case_set.model: self.cache}  # other models' caches open on first use

    @classmethod
    def open(cls, case_set: CaseSet) -> StudyMedia:
        dataset = load_dataset(case_set.dataset)
        if case_set.dataset_sha256 and dataset.card.content_sha256 != case_set.dataset_sha256:
            raise ConfigError(f"dataset {case_set.dataset!r} changed since study {case_set.study_id!r} was prepared; "
                              "prepare the study again under a new id")
        card = read_model_card(resolve_model_dir(case_set.model))
        ids = [case.case_id for case in (*case_set.cases, *case_set.practice, *case_set.attention)]
        locations = dict(zip(ids, locate_cases(dataset, ids), strict=True))
        return cls(dataset, ExplanationCache(explanation_cache_dir(case_set.model), card), case_set, locations)

    def image_png(self, case_id: str, display_size: int = DISPLAY_SIZE) -> bytes:
        split, index = self._where(case_id)
        return _png(to_display_image(self.dataset[split].images[index], display_size))

    def reading_png(self, case_id: str) -> bytes:
        """The image at its own resolution: the import's reading copy (image folders, DICOM), else
        the stored pixels in grey, at most `MAX_READING_PX`. The viewer zooms into these pixels and
        applies window/level to their grey values."""
        split, index = self._where(case_id)
        copy = reading_copy_path(self.dataset.path, case_id)
        if copy.is_file():
            return copy.read_bytes()
        pixels = self.dataset[split].images[index].float().mean(dim=0)
        picture = Image.fromarray((pixels.clamp(0, 1) * 255).round().byte().numpy(), mode="L")
        if max(picture.size) > MAX_READING_PX:
            picture.thumbnail((MAX_READING_PX, MAX_READING_PX), Image.Resampling.LANCZOS)
        return _png(picture)

    def layer_png(self, case_id: str, look: str = "contour", model: str | None = None,
                  map_source: str = OWN_MAP) -> bytes | None:
        """The case's cached map alone as an RGBA layer in `look`, or None when the cache has no entry.
        `model` advises (None: the study's model); `map_source` says whose map (`CaseSet.map_request`)."""
        self._where(case_id)
        case = self.mapped_cases.get(case_id)
        if case is None:
            return None  # attention checks show no map
        holder, request = self.case_set.map_request(case, model, map_source)
        entry = self._cache(holder).load_explanation(case_id, request)
        return None if entry is None else _png(render_layer(entry.attribution, look, display_size=DISPLAY_SIZE))

    def _cache(self, model: str) -> ExplanationCache:
        if model not in self.caches:
            card = read_model_card(resolve_model_dir(model))
            self.caches[model] = ExplanationCache(explanation_cache_dir(model), card)
        return self.caches[model]

    def _where(self, case_id: str) -> tuple[str, int]:
        try:
            return self.locations[case_id]
        except KeyError:
            raise ConfigError(f"case {case_id!r} is not part of this study's case set") from None


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
