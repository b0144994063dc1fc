"""The saliency methods by name: what each is, whether it is signed or stochastic, its parameters.

No torch here. A study design checks its method name (and `study validate` runs) without loading
Captum or torchvision; `xai_lab.explain.methods` pairs each entry with the Captum code that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xai_lab.errors import ExplainError


@dataclass(frozen=True)
class Parameter:
    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()  # for a text parameter: the values it takes

    def problem(self, value: Any) -> str | None:
        """Why `value` cannot be this parameter (None when it can): its default's type, above 0, a choice."""
        expected = type(self.default)
        if type(value) is not expected and not (expected is float and type(value) is int):
            return f"must be {expected.__name__} like its default {self.default!r}, got {value!r}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, got {value!r}"
        if expected in (int, float) and value <= 0:
            return f"must be above 0, got {value!r}"
        return None


@dataclass(frozen=True)
class MethodSpec:
    """One attribution method as a user names and configures it."""

    name: str
    title: str
    reference: str
    signed: bool  # True when attributions carry meaningful sign (evidence for vs against)
    stochastic: bool  # True when the result depends on the random seed
    parameters: tuple[Parameter, ...] = field(default_factory=tuple)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters}

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def settings(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Every parameter's value: the given ones, checked, over the defaults; refuses unknown names."""
        unknown = sorted(set(parameters) - set(self.defaults()))
        if unknown:
            allowed = ", ".join(self.defaults()) or "none"
            raise ExplainError(f"{self.name} has no parameter {', '.join(unknown)}; its parameters: {allowed}")
        for name, value in parameters.items():
            problem = self.parameter(name).problem(value)
            if problem:
                raise ExplainError(f"{self.name} parameter {name} {problem}")
        return {**self.defaults(), **parameters}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "reference": self.reference, "signed": self.signed,
                "stochastic": self.stochastic,
                "parameters": {p.name: {"default": p.default, "description": p.description} for p in self.parameters}}


_BASELINE = Parameter("baseline", "blurred", "reference image: blurred (default) or black", ("blurred", "black"))

METHOD_SPECS: dict[str, MethodSpec] = {m.name: m for m in [
    MethodSpec("saliency", "Gradient (saliency)", "Simonyan et al., ICLR workshop 2014", False, False),
    MethodSpec("integrated_gradients", "Integrated Gradients", "Sundararajan et al., ICML 2017", True, False,
               (Parameter("n_steps", 32, "path integral steps (Gauss-Legendre)"), _BASELINE,
                Parameter("internal_batch_size", 32, "path points per forward/backward pass"))),
    MethodSpec("smoothgrad", "SmoothGrad", "Smilkov et al., 2017", False, True,
               (Parameter("samples", 16, "noisy copies averaged"),
                Parameter("samples_batch_size", 16, "noisy copies per forward/backward pass"),
                Parameter("noise_level", 0.05, "noise sigma as a share of the image's value range"))),
    MethodSpec("gradient_shap", "GradientSHAP", "Lundberg & Lee, NeurIPS 2017", True, True,
               (Parameter("samples", 16, "baseline/noise samples"),
                Parameter("noise_level", 0.05, "noise sigma added to each sample"))),
    MethodSpec("deeplift", "DeepLift (rescale)", "Shrikumar et al., ICML 2017", True, False, (_BASELINE,)),
    MethodSpec("occlusion", "Occlusion", "Zeiler & Fergus, ECCV 2014", True, False,
               (Parameter("window_fraction", 0.125, "occluding square side as a share of the image side"),
                Parameter("baseline", "blurred", "what fills the occluded square: blurred (default) or black",
                          ("blurred", "black")),
                Parameter("perturbations_per_eval", 32, "occluded copies per forward pass"))),
    MethodSpec("gradcam", "Grad-CAM", "Selvaraju et al., ICCV 2017", False, False),
    MethodSpec("guided_gradcam", "Guided Grad-CAM", "Selvaraju et al., ICCV 2017", True, False),
]}


def method_spec(name: str) -> MethodSpec:
    """The catalogue entry of a method, or an error listing the methods there are."""
    if name not in METHOD_SPECS:
        raise ExplainError(f"unknown saliency method {name!r}; choose one of {', '.join(METHOD_SPECS)}")
    return METHOD_SPECS[name]
