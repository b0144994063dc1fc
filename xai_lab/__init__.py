"""xai-lab: an explainable-AI clinician trust lab.

Public API for notebooks and the rest of the lab::

    from xai_lab import load_dataset, load_model
    data = load_dataset("synthetic")        # splits as tensors, class names, card
    model, card = load_model("models/synthetic")  # eval-mode module and its model card
"""

from __future__ import annotations

from xai_lab.version import __version__

__all__ = ["__version__", "load_dataset", "load_model"]


def __getattr__(name: str):
    # Imported lazily so `xai-lab --help` and `import xai_lab` stay fast (torch takes ~2 s).
    if name == "load_dataset":
        from xai_lab.data.storage import load_dataset

        return load_dataset
    if name == "load_model":
        from xai_lab.model.storage import load_model

        return load_model
    raise AttributeError(f"module 'xai_lab' has no attribute {name!r}")
