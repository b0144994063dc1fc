"""How a saliency map is drawn for a reader: the named looks a study design can choose per arm.

No torch here: the study design validates look names without loading the explanation stack.

- ``contour`` (default): the radiograph untouched except the map's top region, outlined and
  filled with a translucent tint capped at `CONTOUR_MAX_ALPHA`, so the anatomy under the map keeps
  most of its contrast (a uniform tint of opacity a keeps 1 - a of it) and areas the map says
  little about get no colour at all (no haze from a diffuse map's low values).
- ``side_by_side``: the plain radiograph and the contour look next to each other.
- ``heatmap``: the full map blended over the image (opacity up to 0.6), as in most saliency
  papers and this lab's first studies; kept so earlier designs can be replicated.
"""

from __future__ import annotations

OVERLAY_LOOKS = ("contour", "side_by_side", "heatmap")
DEFAULT_LOOK = "contour"
CONTOUR_MAX_ALPHA = 0.3  # a 30% tint: 70% of every local contrast under it survives
CONTOUR_TOP_PERCENT = 10.0  # the outlined region: the map's top 10% of pixels
