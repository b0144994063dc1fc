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


# An imported network's child holding this share of its parameters is opened into its own children, so
# DenseNet's single `features` container becomes its dense blocks (see `imported_blocks`).
_OPEN_ABOVE_SHARE = 0.9


def cascade_blocks(model: ImageClassifier) -> list[tuple[str, nn.Module]]:
    """The blocks randomised in turn, top (output) first: the head, then each feature stage."""
    network = model.network
    if model.imported:
        return imported_blocks(network.imported)
    stages = [(f"features.{index}", stage) for index, stage in enumerate(network.features)]
    return [("head", network.head), *reversed(stages)]


def imported_blocks(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """A network the lab did not build, in blocks, top first: its children that hold parameters, in the order
    they were defined (torchvision's ResNet: fc, layer4 ... layer1, bn1, conv1), opening any child that holds
    nearly all the parameters (torchvision's DenseNet: classifier, features.norm5, features.denseblock4 ...).
    Definition order is the forward order in every torchvision classifier; a network defined otherwise is
    still fully randomised at the cascade's end, which is what the pass rule reads."""
    blocks = _parameterised_children(network, "")
    while blocks:
        total = sum(_size(module) for _, module in blocks)
        name, biggest = max(blocks, key=lambda block: _size(block[1]))
        inner = _parameterised_children(biggest, f"{name}.")
        if _size(biggest) < _OPEN_ABOVE_SHARE * total or len(inner) < 2:
            break
        at = [block_name for block_name, _ in blocks].index(name)
        blocks[at:at + 1] = inner
    return list(reversed(blocks))


def _parameterised_children(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    return [(prefix + name, child) for name, child in module.named_children() if _size(child) > 0]


def _size(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def reinitialise(block: nn.Module) -> None:
    """Re-draw a block's parameters from PyTorch's default initialisers.

    A TorchScript module keeps only its compiled forward, not `reset_parameters`: its weights (2-D and up)
    are re-drawn as PyTorch initialises convolutions and linear layers (Kaiming uniform, a = sqrt(5)),
    its biases set to zero and its normalisation layers to unit scale and fresh running statistics.
    """
    for module in block.modules():
        if isinstance(module, torch.jit.ScriptModule):
            _reinitialise_scripted(module)
        elif hasattr(module, "reset_parameters"):  # convolutions, BatchNorm, linear layers
            module.reset_parameters()


@torch.no_grad()
def _reinitialise_scripted(module: torch.jit.ScriptModule) -> None:
    for name, parameter in module.named_parameters(recurse=False):
        if parameter.dim() >= 2:
            nn.init.kaiming_uniform_(parameter, a=5 ** 0.5)
        elif name == "weight":
            parameter.fill_(1.0)
        else:
            parameter.zero_()
    for name, buffer in module.named_buffers(recurse=False):
        if name == "running_var":
            buffer.fill_(1.0)
        elif name == "running_mean":
            buffer.zero_()


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
                reinitialise(block)
                states.append((name, copy.deepcopy(randomised.state_dict())))
    for name, state in states:
        randomised.load_state_dict(state)
        yield name, randomised


def fully_randomised(model: ImageClassifier, seed: int = 0) -> ImageClassifier:
    """A copy of the model with every block re-initialised (the cascade's last step): its maps look like
    maps but carry nothing the trained model learned. Studies show them as unfaithful explanations."""
    last = None
    for _, randomised in cascading_randomisation(model, seed):
        last = randomised
    if last is None:
        raise ValueError("the model has no blocks to randomise")
    return last


def passes(upper_spearman: float, upper_ssim: float) -> bool:
    """The a-priori pass rule (see the module docstring)."""
    return bool(upper_spearman < PASS_BELOW and upper_ssim < PASS_BELOW)
