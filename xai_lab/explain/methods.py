"""The saliency methods the lab offers: a registry of small Captum adapters.

Each `SaliencyMethod` names a Captum algorithm, its parameters with their defaults, and a
`compute` function that returns raw attributions for a batch. The shared work (validation,
batching, seeding, channel reduction, upsampling to input resolution, hook hygiene) lives in
`xai_lab.explain.attribution.attribute`, so a method here is a few lines, in the spirit of
pytorch-grad-cam's method files.

Baselines: integrated gradients, DeepLift and occlusion compare by default against the
image blurred with sigma = 5% of its side (`blurred_baseline`): blur removes focal findings
and keeps the anatomy, so the attribution answers "what here differs from a featureless
version of this radiograph"; a black image (`baseline="black"`) instead attributes the
whole anatomy. GradientSHAP draws its baselines from both. The faithfulness curves in
`xai_lab.explain.metrics` use the blurred image too.

SmoothGrad's noise: Smilkov et al. suggest 10-20% of the value range; on the synthetic set,
whose lesions add only 3-30% contrast, 15% noise drowned them (pointing game 0.25 on 60
lesion images, against 0.87 at 5%), so the default is 5%.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from captum.attr import (
    DeepLift,
    GradientShap,
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torchvision.transforms.v2 import functional as TF

from xai_lab.explain.catalogue import METHOD_SPECS, MethodSpec
from xai_lab.model.network import ImageClassifier

Compute = Callable[[ImageClassifier, torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]


@dataclass(frozen=True)
class SaliencyMethod(MethodSpec):
    """One attribution method: its catalogue entry (name, parameters) and how to run it on a batch."""

    compute: Compute | None = None
    # Images per Captum call. CPU: the faster of batched and unbatched measured by
    # benchmarks/explain_bench.py (methods that already expand each image into many
    # forward passes - path steps, noise samples, occlusion windows - run fastest one image at
    # a time). GPU: not measurable on the project's machine; batches of 32 images, or 4 for
    # the expanding methods, keep a consumer GPU's memory in bounds. Stochastic methods always
    # run one image per call (`attribute` seeds each image), their samples batched by Captum.
    cpu_batch_size: int = 32
    gpu_batch_size: int = 32

    def batch_size_for(self, device: torch.device) -> int:
        return self.gpu_batch_size if device.type == "cuda" else self.cpu_batch_size


def black_baseline(images: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(images)


def blurred_baseline(images: torch.Tensor, sigma_fraction: float = 0.05) -> torch.Tensor:
    """A Gaussian blur with sigma = 5% of the image side: removes focal detail, keeps the anatomy."""
    sigma = max(1.0, sigma_fraction * images.shape[-1])
    kernel = 2 * int(3 * sigma) + 1
    return TF.gaussian_blur(images, kernel_size=[kernel, kernel], sigma=[sigma, sigma])


def _saliency(model, images, targets, params):
    return Saliency(model).attribute(images, target=targets, abs=True)


def _baseline(images: torch.Tensor, kind: str) -> torch.Tensor:
    return blurred_baseline(images) if kind == "blurred" else black_baseline(images)


def _integrated_gradients(model, images, targets, params):
    return IntegratedGradients(model).attribute(
        images, baselines=_baseline(images, params["baseline"]), target=targets, n_steps=params["n_steps"],
        method="gausslegendre", internal_batch_size=params["internal_batch_size"])


def _smoothgrad(model, images, targets, params):
    noise_sigma = params["noise_level"] * float(images.detach().max() - images.detach().min())
    return NoiseTunnel(Saliency(model)).attribute(
        images, nt_type="smoothgrad", nt_samples=params["samples"], nt_samples_batch_size=params["samples_batch_size"],
        stdevs=noise_sigma, target=targets, abs=True)


def _gradient_shap(model, images, targets, params):
    baselines = torch.cat([black_baseline(images), blurred_baseline(images)])
    return GradientShap(model).attribute(images, baselines=baselines, n_samples=params["samples"],
                                         stdevs=params["noise_level"], target=targets)


def _deeplift(model, images, targets, params):
    return DeepLift(model).attribute(images, baselines=_baseline(images, params["baseline"]), target=targets)


def _occlusion(model, images, targets, params):
    side = images.shape[-1]
    window = max(2, round(params["window_fraction"] * side))
    stride = max(1, window // 2)
    return Occlusion(model).attribute(
        images, sliding_window_shapes=(images.shape[1], window, window), strides=(images.shape[1], stride, stride),
        baselines=_baseline(images, params["baseline"]), target=targets,
        perturbations_per_eval=params["perturbations_per_eval"])


def _gradcam(model, images, targets, params):
    cam = LayerGradCam(model, model.gradcam_layer).attribute(images, target=targets, relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), interpolate_mode="bilinear")


def _guided_gradcam(model, images, targets, params):
    return GuidedGradCam(model, model.gradcam_layer).attribute(images, target=targets, interpolate_mode="bilinear")


# Batch sizes by method (see SaliencyMethod); the rest of each entry lives in the torch-free catalogue.
_RUNNERS: dict[str, tuple[Compute, int, int]] = {
    "saliency": (_saliency, 32, 32),
    "integrated_gradients": (_integrated_gradients, 1, 4),
    "smoothgrad": (_smoothgrad, 1, 1),
    "gradient_shap": (_gradient_shap, 1, 1),
    "deeplift": (_deeplift, 16, 32),
    "occlusion": (_occlusion, 1, 4),
    "gradcam": (_gradcam, 32, 32),
    "guided_gradcam": (_guided_gradcam, 32, 32),
}

# A method is one entry in each registry (its spec in the torch-free catalogue, its runner here): a spec
# without a runner, or a runner without a spec, stops the import with the fix, not a KeyError later.
if set(_RUNNERS) != set(METHOD_SPECS):
    raise ImportError(f"explanation methods without a runner: {sorted(set(METHOD_SPECS) - set(_RUNNERS))}; runners "
                      f"without a spec: {sorted(set(_RUNNERS) - set(METHOD_SPECS))}; add the missing half "
                      "(docs/explanations.md, 'Adding a method')")

METHODS: dict[str, SaliencyMethod] = {
    name: SaliencyMethod(**{f.name: getattr(spec, f.name) for f in fields(spec)}, compute=_RUNNERS[name][0],
                         cpu_batch_size=_RUNNERS[name][1], gpu_batch_size=_RUNNERS[name][2])
    for name, spec in METHOD_SPECS.items()}
