"""Explanations: Captum saliency behind one interface, clinician-grade overlays, measured quality.

`METHODS` and `attribute` load torch and Captum, so they are imported on first use: the study
layer reads `xai_lab.explain.catalogue` and `xai_lab.explain.looks` without paying for them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["METHODS", "attribute"]


def __getattr__(name: str) -> Any:
    if name == "METHODS":
        from xai_lab.explain.methods import METHODS

        return METHODS
    if name == "attribute":
        from xai_lab.explain.attribution import attribute

        return attribute
    raise AttributeError(f"module 'xai_lab.explain' has no attribute {name!r}")
