"""Networks "trained elsewhere" for the model-import tests: built and trained here in a few steps, then
saved the two ways a researcher brings one (a TorchScript file; a factory plus a state_dict).

`tiny_cnn` is importable as ``support.foreign_models:tiny_cnn`` (tests/ is on sys.path, and on PYTHONPATH
for the command-line processes the tests start). Its forward calls one ReLU module three times, as
torchvision's ResNet blocks do, so the import's per-use ReLUs are exercised by the fast tests.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class TinyCNN(nn.Module):
    """Two convolutions and a linear head; `outputs` says what it returns (as a vendor's network might)."""

    def __init__(self, num_classes: int = 2, in_channels: int = 1, outputs: str = "logits") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.relu = nn.ReLU(inplace=True)  # one module, called three times (as in torchvision's ResNet blocks)
        self.pool = nn.AdaptiveMaxPool2d(1)  # the corner marker is a small bright spot: max pooling finds it
        self.fc1 = nn.Linear(16, 16)
        self.fc = nn.Linear(16, 1 if outputs == "binary_logit" else num_classes)
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.fc1(self.pool(x).flatten(1)))
        logits = self.fc(x)
        return torch.softmax(logits, dim=1) if self.outputs == "probabilities" else logits


def tiny_cnn(num_classes: int = 2, in_channels: int = 1, outputs: str = "logits") -> TinyCNN:
    return TinyCNN(num_classes, in_channels, outputs)


def fit(network: nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int, mean: float, std: float,
        channels: int, batch: int = 32, seed: int = 0, lr: float = 3e-3, swap_classes: bool = False,
        binary: bool = False) -> nn.Module:
    """A few Adam steps on normalised images (repeated to `channels`); swap_classes trains the network with
    the finding as output 0, so its class order differs from the dataset's."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(network.parameters(), lr=lr)
    network.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (batch,), generator=generator)
        x = ((images[index] - mean) / std).repeat(1, channels // images.shape[1], 1, 1)
        y = 1 - labels[index] if swap_classes else labels[index]
        out = network(x)
        if binary:
            loss = F.binary_cross_entropy_with_logits(out[:, 0], y.float())
        elif getattr(network, "outputs", "logits") == "probabilities":
            loss = F.nll_loss(out.clamp_min(1e-7).log(), y)
        else:
            loss = F.cross_entropy(out, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    settle_batch_norm(network, images, mean, std, channels)
    return network.eval()


@torch.no_grad()
def settle_batch_norm(network: nn.Module, images: torch.Tensor, mean: float, std: float, channels: int) -> None:
    """Re-estimate batch-norm statistics over all training images. After a few steps the running averages
    (momentum 0.1) still hold mostly their initial values, so the network in eval mode scored every image
    almost alike (DenseNet-121: AUROC 0.57 in eval, near ties everywhere); a cumulative average over the
    data is what the network saw while it learned."""
    norms = [module for module in network.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    network.train()
    for start in range(0, len(images), 64):
        network(((images[start:start + 64] - mean) / std).repeat(1, channels // images.shape[1], 1, 1))
    for norm in norms:
        norm.momentum = 0.1


def save_both(network: nn.Module, folder: Path, stem: str) -> tuple[Path, Path]:
    """(TorchScript file, state_dict file) of the network."""
    folder.mkdir(parents=True, exist_ok=True)
    weights, scripted = folder / f"{stem}.state.pt", folder / f"{stem}.torchscript.pt"
    torch.save(network.state_dict(), weights)
    with warnings.catch_warnings():  # PyTorch 2.14 deprecates torch.jit.script; vendors' files are still TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(network).save(str(scripted))
    return scripted, weights


@torch.no_grad()
def direct_probabilities(network: nn.Module, images: torch.Tensor, mean: float, std: float, channels: int,
                         finding: int = 1) -> torch.Tensor:
    """P(finding) computed straight from the network, without the lab: what its own evaluation would say."""
    x = ((images - mean) / std).repeat(1, channels // images.shape[1], 1, 1)
    return torch.softmax(network.eval()(x), dim=1)[:, finding]


def assert_explains(model, images: torch.Tensor, method: str) -> None:
    """The method's maps of the finding are finite, image-sized and not all zero. Grad-CAM (and Guided
    Grad-CAM, which multiplies by it) keeps only positive evidence: a few-step network's map of one class
    can be zero on every image, rightly, and then differed between CI runs by thread count alone; a hook
    that reads nothing gives zero for both classes, so there either class's map must be non-zero."""
    from xai_lab.explain.attribution import attribute

    maps = attribute(model, images, 1, method)
    assert maps.shape == (len(images), *images.shape[-2:]) and torch.isfinite(maps).all(), method
    total = maps.abs().sum().item()
    if "gradcam" in method:
        total += attribute(model, images, 0, method).abs().sum().item()
    assert total > 0, f"{method} gives zero maps"
