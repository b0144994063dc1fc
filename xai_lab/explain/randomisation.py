"""Model-parameter randomisation test (Adebayo et al., NeurIPS 2018), cascading from the top.

A saliency map that explains the model must change when the model's learned weights are
destroyed. The cascade re-initialises the layers one block at a time, from the output layer
down to the first convolution, and compares each randomised model's maps with the trained
model's maps (Spearman rank correlation and SSIM, `xai_lab.explain.metrics`).

Pass rule, fixed before any method was measured: a method **passes** when, after full
randomisation, the upper end of the 95% confidence interval of the mean similarity is below
`PASS_BELOW` (0.5) for both Spearman and SSIM, i.e. the maps share less than half their
structure with the trained model's. A map that survives full randomisation is explaining
the image (edges, contrast), not the model.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from xai_lab.model.locking import MODEL_LOCK
from xai_lab.model.network import ImageClassifier

PASS_BELOW = 0.5


def cascade_blocks(model: ImageClassifier) -> list[tuple[str, nn.Module]]:
    """The blocks randomised in turn, top (output) first: the head, then each feature stage."""
    network = model.network
    stages = [(f"features.{index}", stage) for index, stage in enumerate(network.features)]
    return [("head", network.head), *reversed(stages)]


def cascading_randomisation(model: ImageClassifier, seed: int = 0) -> Iterator[tuple[str, ImageClassifier]]:
    """Yield (block name, model with this block and all above it re-initialised), top down.

    The trained model is not touched: the cascade works on a copy. Re-initialisation uses
    PyTorch's default initialisers (`reset_parameters`), drawn from a generator seeded with
    `seed`, so the randomised models are reproducible. BatchNorm layers are reset too (unit
    scale, zero shift, fresh running statistics), as in Adebayo et al.'s cascade.
    """
    # All randomised weights are drawn up front, under the lock, from a forked global RNG: the
    # copy must not catch another thread's explanation hooks, and the seeded draws must not
    # interleave with another thread's (see xai_lab.model.locking). Then one copy is refilled.
    with MODEL_LOCK:
        randomised = copy.deepcopy(model).eval()
        states = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for name, block in cascade_blocks(randomised):
                for module in block.modules():
                    if hasattr(module, "reset_parameters"):  # convolutions, BatchNorm, linear layers
                        module.reset_parameters()
                states.append((name, copy.deepcopy(randomised.state_dict())))
    for name, state in states:
        randomised.load_state_dict(state)
        yield name, randomised


def passes(upper_spearman: float, upper_ssim: float) -> bool:
    """The a-priori pass rule (see the module docstring)."""
    return bool(upper_spearman < PASS_BELOW and upper_ssim < PASS_BELOW)
