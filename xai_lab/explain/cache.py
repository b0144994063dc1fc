"""Precomputed explanations for study cases: what the study UI reads, never computes.

Layout (one folder per model, default ``$XAI_LAB_HOME/cache/<model name>/``)::

    cache.json                               which model (weights sha256) and dataset wrote it
    cases/<case id>/prediction.npz (+ .sha256)   decision and calibrated probabilities
    cases/<case id>/<method>-<key>.npz (+ .sha256)   attribution map (at image resolution)

`<method>-<key>` is `ExplanationRequest.key()`: it hashes the method's parameters, the seed
and the explained class, so changing any makes a new entry instead of silently serving an old
one. Pages draw the map in their own look from the stored attribution; entries written by
earlier versions also hold a rendered heat-map PNG, which is ignored. Every file is written to a temporary name
and renamed into place, then its sha256 is written beside it: a crash leaves either no entry
or an entry whose checksum does not match, which is detected and recomputed on the next run.
A cache opened with a different model is refused: maps explain one model's weights.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from xai_lab.errors import ExplainError
from xai_lab.explain.request import ExplanationRequest
from xai_lab.model.card import ModelCard

MANIFEST = "cache.json"


@dataclass(frozen=True)
class CachedPrediction:
    case_id: str
    label: int  # ground truth
    predicted: int
    probabilities: list[float]  # calibrated

    @property
    def confidence(self) -> float:
        """Calibrated probability of the predicted class."""
        return float(self.probabilities[self.predicted])


@dataclass(frozen=True)
class CachedExplanation:
    case_id: str
    method: str
    target: int
    attribution: np.ndarray  # (H, W) float32 at image resolution
    settings: dict[str, Any] = field(default_factory=dict)


class ExplanationCache:
    """The cache folder of one model; see the module docstring for the layout and guarantees."""

    def __init__(self, root: Path, model_card: ModelCard) -> None:
        self.root = Path(root)
        self.weights_sha256 = model_card.weights_sha256
        self.model_name = model_card.name
        if not self.weights_sha256:
            raise ExplainError("the model card has no weights_sha256; retrain the model with 'xai-lab train'")
        self._check_owner()

    def _check_owner(self) -> None:
        manifest = self.root / MANIFEST
        if not manifest.is_file():
            return
        try:
            owner = json.loads(manifest.read_text())
        except ValueError:
            raise ExplainError(f"{manifest} is damaged; delete the folder {self.root} and run "
                               "'xai-lab explain precompute' again") from None
        if owner.get("weights_sha256") != self.weights_sha256:
            raise ExplainError(
                f"the cache in {self.root} was written by model '{owner.get('model')}' "
                f"(weights {str(owner.get('weights_sha256'))[:12]}), not by '{self.model_name}' "
                f"(weights {self.weights_sha256[:12]}); use --cache with another folder for this model")

    def claim(self, dataset: str, dataset_sha256: str) -> None:
        """Write the manifest naming this model as the cache's owner (first write only)."""
        if (self.root / MANIFEST).is_file():
            return
        manifest = {"model": self.model_name, "weights_sha256": self.weights_sha256, "dataset": dataset,
                    "dataset_content_sha256": dataset_sha256, "created_at": datetime.now(UTC).isoformat()}
        _atomic_write(self.root / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())

    # -- predictions
    def prediction_path(self, case_id: str) -> Path:
        return self._case_dir(case_id) / "prediction.npz"

    def save_prediction(self, prediction: CachedPrediction) -> None:
        payload = _npz_bytes(meta=json.dumps({**prediction.__dict__, "weights_sha256": self.weights_sha256}))
        _write_checked(self.prediction_path(prediction.case_id), payload)

    def load_prediction(self, case_id: str) -> CachedPrediction | None:
        arrays = _read_checked(self.prediction_path(case_id))
        if arrays is None:
            return None
        meta = json.loads(str(arrays["meta"]))
        if meta.pop("weights_sha256", None) != self.weights_sha256:
            return None
        return CachedPrediction(**meta)

    # -- explanations
    def explanation_path(self, case_id: str, request: ExplanationRequest) -> Path:
        return self._case_dir(case_id) / f"{request.key()}.npz"

    def save_explanation(self, explanation: CachedExplanation, request: ExplanationRequest) -> None:
        meta = {"case_id": explanation.case_id, "method": explanation.method, "target": explanation.target,
                "settings": request.settings(), "weights_sha256": self.weights_sha256}
        payload = _npz_bytes(attribution=explanation.attribution.astype(np.float32), meta=json.dumps(meta))
        _write_checked(self.explanation_path(explanation.case_id, request), payload)

    def load_explanation(self, case_id: str, request: ExplanationRequest) -> CachedExplanation | None:
        """The entry, or None when it is missing, damaged or written for other weights."""
        arrays = _read_checked(self.explanation_path(case_id, request))
        if arrays is None:
            return None
        meta = json.loads(str(arrays["meta"]))
        if meta["weights_sha256"] != self.weights_sha256:
            return None
        return CachedExplanation(case_id, meta["method"], meta["target"], arrays["attribution"], meta["settings"])

    def _case_dir(self, case_id: str) -> Path:
        # Case ids come from dataset files (an image folder's are relative paths such as
        # "pneumonia/im1.png"): a plain id names its folder, any other its hash, so none escapes.
        if not case_id:
            raise ExplainError("an empty case id cannot name a cache entry; every case needs an id")
        if _PLAIN_ID.fullmatch(case_id) and case_id not in (".", ".."):
            return self.root / "cases" / case_id
        return self.root / "cases" / f"id-{hashlib.sha256(case_id.encode()).hexdigest()[:32]}"


_PLAIN_ID = re.compile(r"[A-Za-z0-9._-]{1,120}")


def _npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()


def _write_checked(path: Path, payload: bytes) -> None:
    """Payload first, then its checksum: an entry is valid only once both agree."""
    checksum = path.with_suffix(".sha256")
    checksum.unlink(missing_ok=True)
    _atomic_write(path, payload)
    _atomic_write(checksum, hashlib.sha256(payload).hexdigest().encode())


def _read_checked(path: Path) -> dict[str, np.ndarray] | None:
    checksum = path.with_suffix(".sha256")
    try:
        payload = path.read_bytes()
        expected = checksum.read_text().strip()
    except OSError:
        return None
    if hashlib.sha256(payload).hexdigest() != expected:
        return None
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, KeyError):
        return None


def _atomic_write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
