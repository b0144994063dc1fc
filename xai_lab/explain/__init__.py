"""Explanations: Captum saliency behind one interface, clinician-grade overlays, measured quality."""

from xai_lab.explain.attribution import attribute
from xai_lab.explain.methods import METHODS

__all__ = ["METHODS", "attribute"]
