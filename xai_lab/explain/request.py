"""`ExplanationRequest`: which map is meant - method, its full parameters, seed, explained class - and
the cache key that names it. The one description of a map that `prepare`, `precompute` and the
study UI share, so a map precomputed with non-default parameters is found by the page that shows it.

No torch here: the study layer records requests in its case sets without loading Captum.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from xai_lab.explain.catalogue import method_spec

# Part of every key: the overlay settings the cache's first entries were keyed with. Overlays are
# no longer rendered into the cache (pages draw the map in the study's look), but keeping these
# in the key lets studies prepared by earlier versions find the maps they were prepared with.
KEYED_OVERLAY = {"display_size": 512, "alpha": 0.6, "clip_percentile": 99.0, "mode": "positive",
                 "top_k_percent": None}


@dataclass(frozen=True)
class ExplanationRequest:
    method: str
    parameters: dict[str, Any] = field(default_factory=dict)  # every parameter, defaults filled in
    seed: int = 0
    target: int | None = None  # None: the model's decision; else the class explained (planted advice)
    # None: the model's own map; "randomised:SEED": the map of a copy with every parameter re-initialised
    # (`explain.randomisation.fully_randomised`), an unfaithful map a study can show on purpose
    source: str | None = None

    @classmethod
    def create(cls, method: str, parameters: dict[str, Any] | None = None, seed: int = 0,
               target: int | None = None) -> ExplanationRequest:
        """A request with the method's defaults filled in; unknown methods and parameters are refused."""
        parameters = method_spec(method).settings(parameters or {})
        return cls(method, parameters, seed, None if target is None else int(target))

    def for_target(self, target: int | None) -> ExplanationRequest:
        return replace(self, target=None if target is None else int(target))

    def settings(self) -> dict[str, Any]:
        """What the cache keys an entry by besides model and case (and stores beside the map)."""
        settings = {"seed": self.seed, **self.parameters, "overlay": dict(KEYED_OVERLAY)}
        if self.target is not None:
            settings["target"] = self.target
        if self.source is not None:  # only when set: the keys of every earlier map stay as they were
            settings["source"] = self.source
        return settings

    def key(self) -> str:
        """The cache entry's stable name: the method and a hash of its settings."""
        digest = hashlib.sha256(json.dumps({"method": self.method, **self.settings()}, sort_keys=True).encode())
        return f"{self.method}-{digest.hexdigest()[:16]}"

    def with_source(self, source: str | None) -> ExplanationRequest:
        return replace(self, source=source)

    def to_json(self) -> dict[str, Any]:
        raw = {"method": self.method, "parameters": dict(self.parameters), "seed": self.seed, "target": self.target}
        return raw if self.source is None else {**raw, "source": self.source}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExplanationRequest:
        return cls(raw["method"], dict(raw["parameters"]), int(raw["seed"]), raw.get("target"), raw.get("source"))


# A vendor's own map of a case (`xai-lab advice import`): not a method the lab runs, so no parameters and no
# seed; the request only names the cache entry the import wrote.
VENDOR_MAP = "vendor_map"


def vendor_map_request() -> ExplanationRequest:
    return ExplanationRequest(VENDOR_MAP, {}, 0)
