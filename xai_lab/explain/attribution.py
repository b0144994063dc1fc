"""`attribute`: one call for every saliency method, with the checks and hygiene they all need.

    maps = attribute(model, images, targets, "gradcam")   # (N, H, W) float32 at input resolution

Maps explain the **log-odds** of the target class, log p / (1 - p) of the calibrated
probability (for two classes: the difference of the two logits). A class's raw logit also
carries evidence common to all classes, which cancels in the softmax and so never changes
the decision; the log-odds is what the decision is made on. (Measured on the default
synthetic model, 60 lesion images: Grad-CAM's pointing game 0.75 with the raw logit, 0.85
with the log-odds; the gradient methods unchanged within 0.01.)

The model is put in eval mode for the call (BatchNorm statistics and dropout fixed) and
restored after; gradients are enabled even inside a caller's `torch.no_grad()`; stochastic
methods draw from a forked RNG seeded with `seed` for every image, so an image's map is
reproducible whatever it is batched with, and the caller's random state is untouched; any
hook a method leaves on the model, also after an error, is removed. Calls from several threads
take turns (`xai_lab.model.locking`), so a model shared by server sessions is safe.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from xai_lab.errors import ExplainError
from xai_lab.explain.catalogue import method_spec
from xai_lab.explain.methods import METHODS, SaliencyMethod
from xai_lab.model.imported import HOOKED_METHODS
from xai_lab.model.locking import MODEL_LOCK
from xai_lab.model.network import ImageClassifier

# Every way a Captum method hooks a module; `_released_hooks` keeps the handle each returns.
_HOOK_REGISTRARS = ("register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
                    "register_full_backward_pre_hook", "register_backward_hook")


def attribute(model: ImageClassifier, images: torch.Tensor, targets: int | Sequence[int] | torch.Tensor,
              method: str, *, seed: int = 0, batch_size: int | None = None, **params: Any) -> torch.Tensor:
    """Attribution maps (N, H, W), float32, at the resolution of `images`, for class `targets`.

    images: float pixels in [0, 1], N x C x H x W with the model's channel count and square
    H = W (any size: the model resizes internally, maps come back at the size given).
    targets: one class index for all images, or one per image.
    params: method parameters (see `METHODS[method].describe()`); unknown names are refused.
    batch_size: images per Captum call; default: the method's measured best for the model's
    device (`SaliencyMethod.batch_size_for`). Stochastic methods (SmoothGrad, GradientSHAP)
    run one image per call, each drawing the same seeded noise, so a map never depends on
    which images were explained with it.
    """
    spec = resolve_method(method)
    check_method_fits(model, spec.name)
    settings = spec.settings(params)
    images = check_images(model, images)
    target_tensor = check_targets(model, targets, len(images))
    if batch_size is None:
        batch_size = spec.batch_size_for(next(model.parameters()).device)
    if batch_size < 1:
        raise ExplainError(f"batch_size must be at least 1, got {batch_size}")
    maps = []
    explained = TargetLogOdds(model)
    if spec.stochastic:
        # Re-seeded per image (below), so each map depends only on (image, seed), never on
        # the batch it came in or its position: the evaluation, the cache and a single call
        # agree. These methods batch their samples inside Captum instead.
        batch_size = 1
    with _attribution_state(explained, seed):
        for start in range(0, len(images), batch_size):
            if spec.stochastic:
                _seed_all(seed)
            chunk = images[start:start + batch_size].clone().requires_grad_(True)
            raw = spec.compute(explained, chunk, target_tensor[start:start + batch_size], settings)
            maps.append(_to_maps(raw, chunk.shape[-2:], spec))
    return torch.cat(maps).float() if maps else torch.empty(0, *images.shape[-2:])


class TargetLogOdds(nn.Module):
    """The classifier with its calibrated logits turned into per-class log-odds.

    log-odds_c = z_c - logsumexp(z_j, j != c) = log p_c - log(1 - p_c). Exposes the wrapped
    classifier's `spec` and `gradcam_layer`, so every method sees the same interface.
    """

    def __init__(self, classifier: ImageClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    @property
    def spec(self):
        return self.classifier.spec

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.classifier.gradcam_layer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(images)
        n_classes = logits.shape[1]
        own = torch.eye(n_classes, dtype=torch.bool, device=logits.device)
        others = logits.unsqueeze(1).expand(-1, n_classes, -1).masked_fill(own, float("-inf"))
        return logits - torch.logsumexp(others, dim=2)


def resolve_method(name: str) -> SaliencyMethod:
    return METHODS[method_spec(name).name]


def methods_for(model: ImageClassifier, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the methods that can run on this model, those that cannot): a TorchScript model takes no hooks."""
    hooked = [name for name in names if not model.hookable and name in HOOKED_METHODS]
    return [name for name in names if name not in hooked], hooked


def check_method_fits(model: ImageClassifier, name: str) -> None:
    if not model.hookable and name in HOOKED_METHODS:
        raise ExplainError(f"{name} hooks the network's layers, which PyTorch cannot do in a TorchScript model; "
                           "use saliency, integrated_gradients, smoothgrad, gradient_shap or occlusion, or import the "
                           "model as a factory and state_dict (docs/models.md)")


def check_images(model: ImageClassifier, images: torch.Tensor) -> torch.Tensor:
    expected = model.spec.in_channels
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ExplainError(f"images must be a tensor N x C x H x W, got {shape}; add a batch dimension with "
                           "images.unsqueeze(0) for one image")
    if images.shape[1] != expected:
        raise ExplainError(f"the model reads {expected}-channel images but these have {images.shape[1]} channels; "
                           "use images from the dataset the model was trained on")
    if images.shape[-1] != images.shape[-2] or images.shape[-1] < 8:
        raise ExplainError(f"images must be square and at least 8 px, got {images.shape[-2]}x{images.shape[-1]}")
    if not images.is_floating_point() or (images.numel() and (images.min() < 0 or images.max() > 1)):
        raise ExplainError("images must be float pixels in [0, 1] (divide 8-bit images by 255)")
    return images.detach()


def check_targets(model: ImageClassifier, targets: int | Sequence[int] | torch.Tensor, n: int) -> torch.Tensor:
    tensor = torch.as_tensor(targets, dtype=torch.long).flatten()
    if tensor.numel() == 1:
        tensor = tensor.expand(n)
    if tensor.numel() != n:
        raise ExplainError(f"got {tensor.numel()} targets for {n} images; give one target or one per image")
    n_classes = model.spec.n_classes
    if tensor.numel() and (tensor.min() < 0 or tensor.max() >= n_classes):
        bad = int(tensor[(tensor < 0) | (tensor >= n_classes)][0])
        raise ExplainError(f"target class {bad} is out of range: the model has {n_classes} classes "
                           f"(0..{n_classes - 1})")
    return tensor.clone()


def _to_maps(raw: torch.Tensor, size: torch.Size, spec: SaliencyMethod) -> torch.Tensor:
    """Sum channels to one map per image (signed methods keep their sign); check the size."""
    maps = raw.detach().sum(dim=1)
    if maps.shape[-2:] != size:
        raise RuntimeError(f"{spec.name} returned maps of size {tuple(maps.shape[-2:])}, expected {tuple(size)}")
    return maps


@contextlib.contextmanager
def _attribution_state(explained: TargetLogOdds, seed: int) -> Iterator[None]:
    with MODEL_LOCK:  # hooks, mode and the global RNGs are shared by every thread
        was_training = explained.classifier.training
        numpy_state = np.random.get_state()
        explained.eval()
        try:
            with torch.random.fork_rng(devices=[]), torch.enable_grad(), warnings.catch_warnings(), \
                    _released_hooks(explained):
                # Captum announces every hook it sets and removes; that is expected here, not news.
                warnings.filterwarnings("ignore", message=".*(hooks|Setting forward, backward hooks).*")
                _seed_all(seed)
                yield
        finally:
            np.random.set_state(numpy_state)
            explained.classifier.train(was_training)


def _seed_all(seed: int) -> None:
    # Captum's GradientShap draws its baseline choice and path points from NumPy's global RNG,
    # its NoiseTunnel from torch's: both are seeded (and both restored after the call).
    torch.manual_seed(seed)
    np.random.seed(seed)


@contextlib.contextmanager
def _released_hooks(model: nn.Module) -> Iterator[None]:
    """Remove, by its handle, every hook registered on the model's modules inside the block, also
    after an error (a Captum method interrupted midway leaves its hooks on the model otherwise).

    The registration methods are wrapped on the module instances for the block only (the model
    lock keeps other threads out), so the handles are PyTorch's own and nothing private is read.
    """
    handles: list[Any] = []
    modules = list(model.modules())

    def recording(register):
        def register_and_keep(*args, **kwargs):
            handle = register(*args, **kwargs)
            handles.append(handle)
            return handle
        return register_and_keep

    for module in modules:
        for name in _HOOK_REGISTRARS:
            object.__setattr__(module, name, recording(getattr(module, name)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()  # removing an already removed hook is a no-op
        for module in modules:
            for name in _HOOK_REGISTRARS:
                module.__dict__.pop(name, None)
