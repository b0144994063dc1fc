"""A researcher's own PyTorch network, held the way the lab holds its own (`ImageClassifier`).

`ImportedNetwork` adapts a network trained elsewhere to what the lab's wrapper expects of its
``network``: it reads images already resized and normalised by `ImageClassifier.prepare` and returns
logits in the dataset's class order. The adaptation is declared, never guessed (`ModelDeclaration`):

- the network's own output: logits (``logits``), probabilities (``probabilities``: a softmax or
  sigmoid already applied; turned back into logits) or one logit of the finding (``binary_logit``);
- the network's class order, which may differ from the dataset's (outputs are permuted);
- the layer Grad-CAM reads (default: the last convolution, named in the card).

Two ways to bring a network: a TorchScript file (code: loaded only with ``--trust-code``; PyTorch
cannot hook a TorchScript module's layers, so Grad-CAM, Guided Grad-CAM and DeepLift cannot run on it)
or a factory (``package.module:function``) plus a state_dict loaded with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xai_lab.errors import ModelError
from xai_lab.model.network import IMPORTED, ImageClassifier, NetworkSpec
from xai_lab.paths import models_root

TORCHSCRIPT_FILE = "network.torchscript.pt"  # a copy of the imported file, inside the model folder
TRUST_FILE = ".trusted_code.json"  # under models/: code this lab's researcher imported, by hash
OUTPUT_KINDS = ("logits", "probabilities", "binary_logit")
ROUTES = ("torchscript", "factory")
# Captum methods that hook a module (a layer's activations, or every ReLU): a TorchScript module takes no hooks.
HOOKED_METHODS = ("gradcam", "guided_gradcam", "deeplift")
_PROBABILITY_FLOOR = 1e-7


@dataclass(frozen=True)
class ModelDeclaration:
    """What the lab must be told about a network it did not train (command line or a TOML beside it)."""

    route: str  # "torchscript" or "factory"
    class_names: list[str]  # in the network's output order
    input_size: int
    channels: int  # channels the network reads; grey images are repeated to 3 by broadcasting the normalisation
    mean: list[float]
    std: list[float]
    finding: str | None = None  # the class the study asks about; default: the dataset's
    outputs: str = "logits"
    gradcam_layer: str | None = None  # dotted module path; None: the last convolution
    factory: str | None = None  # "package.module:function"
    factory_kwargs: dict[str, Any] = field(default_factory=dict)

    def problem(self) -> str | None:
        """One line naming what is wrong with the declaration and the fix, or None."""
        if self.route not in ROUTES:
            return f"route must be one of {ROUTES}"
        if self.outputs not in OUTPUT_KINDS:
            return f"outputs = {self.outputs!r} is not one of {', '.join(OUTPUT_KINDS)}; say what the network returns"
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            return "declare at least two distinct class names, in the order of the network's outputs"
        if self.outputs == "binary_logit" and len(self.class_names) != 2:
            return "outputs = 'binary_logit' needs exactly two classes"
        if self.finding is not None and self.finding not in self.class_names:
            return f"the finding {self.finding!r} is not one of the declared classes {self.class_names}"
        if not 8 <= self.input_size <= 1024:
            return (f"input size {self.input_size} is outside 8-1024 pixels; declare the size the network was "
                    "trained at")
        if self.channels not in (1, 3):
            return f"channels = {self.channels}: the lab feeds grey (1) or colour (3) images"
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            return (f"mean and std need one value per channel ({self.channels}); got {len(self.mean)} and "
                    f"{len(self.std)}")
        if any(s <= 0 for s in self.std):
            return "every std must be positive"
        if self.route == "factory" and (not self.factory or ":" not in self.factory):
            return "a factory is named as package.module:function (e.g. torchvision.models:densenet121)"
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImportedNetwork(nn.Module):
    """The researcher's network behind the lab's interface: logits in the dataset's class order.

    ``order[k]`` is the network's output index of the dataset's class k.
    """

    def __init__(self, network: nn.Module, outputs: str, order: list[int], gradcam_path: str | None) -> None:
        super().__init__()
        self.imported = network
        self.outputs = outputs
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)
        self.gradcam_path = gradcam_path
        self.members = 1
        # a plain list, not registered: the modules are already the network's (deepcopy maps them to the copy's)
        self.per_use_relus = [module for module in network.modules() if isinstance(module, PerUseReLU)]

    @property
    def is_torchscript(self) -> bool:
        return isinstance(self.imported, torch.jit.ScriptModule)

    @property
    def gradcam_layer(self) -> nn.Module:
        if self.is_torchscript or self.gradcam_path is None:
            raise ModelError("this imported model is a TorchScript file, whose layers PyTorch cannot hook; Grad-CAM, "
                             "Guided Grad-CAM and DeepLift need the model imported as a factory and state_dict "
                             "(docs/models.md)")
        return self.imported.get_submodule(self.gradcam_path)

    def head_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the network's last linear layer reads (the familiarity check's features); a TorchScript model's
        layers cannot be read, so its outputs stand in."""
        linear = [module for module in self.imported.modules() if isinstance(module, nn.Linear)]
        if self.is_torchscript or not linear:
            return self(x)
        seen: list[torch.Tensor] = []
        handle = linear[-1].register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0]))
        try:
            self(x)
        finally:
            handle.remove()
        return seen[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.per_use_relus:
            module.calls = 0
        raw = self.imported(x)
        if isinstance(raw, (tuple, list)):  # e.g. Inception's auxiliary outputs: the first is the prediction
            raw = raw[0]
        if self.outputs == "binary_logit":
            raw = raw.reshape(len(raw), -1)[:, :1]
            raw = torch.cat([torch.zeros_like(raw), raw], dim=1)  # softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]
        elif self.outputs == "probabilities":
            raw = raw.clamp_min(_PROBABILITY_FLOOR).log()
        return raw[:, self.order]


def last_convolution(network: nn.Module) -> str:
    """The dotted path of the network's last 2-D convolution in module order (Grad-CAM's usual layer)."""
    found = [name for name, module in network.named_modules() if isinstance(module, nn.Conv2d)]
    if not found:
        raise ModelError("the network has no 2-D convolution for Grad-CAM; name one with --gradcam-layer "
                         "(a dotted module path such as features.norm5)")
    return found[-1]


def check_layer(network: nn.Module, path: str) -> str:
    try:
        network.get_submodule(path)
    except AttributeError:
        names = [name for name, _ in network.named_modules() if name][-5:]
        raise ModelError(f"the network has no layer {path!r} for Grad-CAM; pass a dotted module path such as "
                         f"{', '.join(names)}") from None
    return path


def no_inplace_relu(network: nn.Module) -> None:
    """DeepLift and guided backpropagation hook every ReLU, and in-place outputs break those hooks; an in-place
    ReLU computes the same values out of place."""
    for module in network.modules():
        if isinstance(module, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU)) and getattr(module, "inplace", False):
            module.inplace = False


class PerUseReLU(nn.Module):
    """One ReLU module called several times in a forward pass (torchvision's ResNet blocks call their
    `relu` two or three times) held as one ReLU per call. DeepLift and guided backpropagation keep each
    ReLU's input and output on the module, so a shared module breaks them; separate modules give the
    same values and let each call be explained. The calls of one pass are counted from zero again at the
    start of every pass (`ImportedNetwork.forward`)."""

    def __init__(self, uses: int) -> None:
        super().__init__()
        self.uses = nn.ModuleList(nn.ReLU() for _ in range(uses))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = self.uses[self.calls % len(self.uses)]
        self.calls += 1
        return relu(x)


def separate_reused_relus(network: nn.Module, example: torch.Tensor) -> int:
    """Replace every ReLU module the network calls more than once per pass by a `PerUseReLU`; returns how many."""
    counts: dict[str, int] = {}
    handles = [module.register_forward_hook(lambda *_, name=name: counts.__setitem__(name, counts.get(name, 0) + 1))
               for name, module in network.named_modules() if isinstance(module, nn.ReLU)]
    try:
        with torch.no_grad():
            network(example)
    except RuntimeError as error:
        raise ModelError(f"the network fails on {example.shape[-1]}-px, {example.shape[1]}-channel input "
                         f"({_first_line(error)}); check --input-size and --channels") from None
    finally:
        for handle in handles:
            handle.remove()
    reused = {name: uses for name, uses in counts.items() if uses > 1}
    for name, uses in reused.items():
        parent_name, _, attribute = name.rpartition(".")
        setattr(network.get_submodule(parent_name) if parent_name else network, attribute, PerUseReLU(uses))
    return len(reused)


def load_torchscript(path: Path) -> nn.Module:
    """Load a TorchScript file (code: the caller has asked for --trust-code)."""
    try:
        with warnings.catch_warnings():  # PyTorch deprecates TorchScript for torch.export; the file is what we have
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, OSError, ValueError) as error:
        raise ModelError(f"{path} is not a TorchScript file PyTorch can load ({_first_line(error)}); save the model "
                         "with torch.jit.script(model).save(path), or import it as --factory and --weights") from None


def build_from_factory(factory: str, kwargs: dict[str, Any]) -> nn.Module:
    """Call ``package.module:function(**kwargs)``; refuse, in one line, anything that is not an nn.Module."""
    module_name, _, attribute = factory.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ModelError(f"the factory {factory} cannot be imported ({_first_line(error)}); install the package "
                         "that defines it in this Python, or check the module:function spelling") from None
    if not callable(function):
        raise ModelError(f"{factory} is not a function or class; name the function that builds the network")
    try:
        signature = inspect.signature(function)
        signature.bind(**kwargs)
    except (TypeError, ValueError) as error:
        raise ModelError(f"{factory} does not take the declared arguments {sorted(kwargs)} ({_first_line(error)}); "
                         "fix [factory_kwargs]") from None
    network = function(**kwargs)
    if not isinstance(network, nn.Module):
        raise ModelError(f"{factory} returned {type(network).__name__}, not a torch.nn.Module; name the function "
                         "that builds the network")
    return network


def load_state(network: nn.Module, weights: Path) -> None:
    """Load a state_dict safely (weights_only=True: a weights file cannot run code)."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise ModelError(f"{weights} is not a state_dict PyTorch loads safely ({_first_line(error)}); save it with "
                         "torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint holding the state_dict
    if not isinstance(state, dict):
        raise ModelError(f"{weights} holds a {type(state).__name__}, not a state_dict; save it with "
                         "torch.save(model.state_dict(), path)")
    state = {key.removeprefix("module."): value for key, value in state.items()}  # DataParallel's prefix
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"the weights in {weights} do not fit the network the factory builds "
                         f"({_first_line(error)}); check [factory_kwargs] (e.g. num_classes)") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:160]


# ------------------------------------------------------------------ a saved imported model

def code_identity(architecture: dict[str, Any], folder: Path) -> tuple[str, str]:
    """(hash, words) of the code an imported model runs when loaded: the TorchScript file itself, or the factory
    called with its arguments."""
    if architecture["route"] == "torchscript":
        digest = hashlib.sha256((folder / TORCHSCRIPT_FILE).read_bytes()).hexdigest()
        return digest, f"the TorchScript file {TORCHSCRIPT_FILE} (sha256 {digest[:12]})"
    call = json.dumps({"factory": architecture["factory"], "kwargs": architecture.get("factory_kwargs", {})},
                      sort_keys=True)
    return hashlib.sha256(call.encode()).hexdigest(), f"the factory {architecture['factory']}"


def trust_code(identity: str, words: str) -> None:
    """Record that this lab's researcher imported this code (`xai-lab model import`)."""
    path = models_root() / TRUST_FILE
    trusted = _trusted()
    trusted[identity] = words
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(trusted, indent=2, sort_keys=True) + "\n")
    staging.replace(path)


def _trusted() -> dict[str, str]:
    try:
        content = json.loads((models_root() / TRUST_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def rebuild(folder: Path, card_name: str, architecture: dict[str, Any], spec: NetworkSpec, mean: list[float],
            std: list[float]) -> ImageClassifier:
    """The wrapper around an imported network, before its weights are loaded.

    A model folder copied in from elsewhere must not run code on load: the code an imported model runs
    (its TorchScript file, or its factory) is loaded only when this lab imported it (`trust_code`).
    """
    identity, words = code_identity(architecture, folder)
    if identity not in _trusted():
        raise ModelError(f"model '{card_name}' runs code ({words}) that was not imported in this lab; import it "
                         "here with 'xai-lab model import' if you trust its source")
    if architecture["route"] == "torchscript":
        network = load_torchscript(folder / TORCHSCRIPT_FILE)
    else:
        network = build_from_factory(architecture["factory"], architecture.get("factory_kwargs", {})).eval()
        no_inplace_relu(network)
        separate_reused_relus(network, torch.zeros(1, architecture["network_channels"], spec.input_size,
                                                   spec.input_size))
    wrapped = ImportedNetwork(network, architecture["outputs"], architecture["class_order"],
                              architecture.get("gradcam_layer"))
    return ImageClassifier(spec, mean, std, network=wrapped)


def imported_spec(channels: int, n_classes: int, input_size: int) -> NetworkSpec:
    """The spec of an imported network: only what the wrapper reads (channels fed, classes, input size)."""
    return NetworkSpec(in_channels=channels, n_classes=n_classes, input_size=input_size, base_width=0,
                       stem=IMPORTED, backbone=IMPORTED)
