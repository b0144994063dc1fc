"""An optional pretrained backbone: torchvision's ResNet-18 with ImageNet weights, fine-tuned.

For users with a network: the weights come from torchvision's own download (cached under
``$TORCH_HOME/hub/checkpoints``, so one download serves every later run, and a file placed there
by hand serves a machine without a network). The default `SmallCNN` needs no download.

The network is laid out like `SmallCNN` (``features`` stages, a ``head``, ``member_logits``), so
Grad-CAM (``features[-1]`` = ``layer4``), the randomisation cascade and the card treat it alike.
"""

from __future__ import annotations

import torch
from torch import nn

from xai_lab.errors import ModelError

RESNET_MIN_INPUT = 64  # five halvings: 64 px leaves a 2 x 2 last map; below that Grad-CAM is one cell


class ResNet18Network(nn.Module):
    """ResNet-18 with its first convolution adapted to the image's channels and a new linear head."""

    def __init__(self, in_channels: int, n_classes: int) -> None:
        from torchvision.models import resnet18

        super().__init__()
        base = resnet18(weights=None)
        _no_inplace_relu(base)
        stem_conv = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.features = nn.Sequential(nn.Sequential(stem_conv, base.bn1, base.relu, base.maxpool),
                                      base.layer1, base.layer2, base.layer3, base.layer4)
        self.average_pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(512, n_classes))
        self.members = 1

    def load_pretrained(self, progress: bool = False) -> str:
        """Copy ImageNet weights into every layer but the head; returns the weights' name.

        A grey-level image gets the sum of the RGB filters of the first convolution, which is what
        the pretrained filters compute on a grey image repeated over three channels.
        """
        from torchvision.models import ResNet18_Weights

        weights = ResNet18_Weights.IMAGENET1K_V1
        try:
            state = weights.get_state_dict(progress=progress, check_hash=True)
        except (OSError, RuntimeError, ValueError) as error:  # URLError is an OSError
            reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
            raise ModelError(f"the pretrained ResNet-18 weights could not be loaded ({reason}); connect to the "
                             f"internet once (they are cached under $TORCH_HOME/hub/checkpoints), place "
                             f"{weights.url.rsplit('/', 1)[-1]} there by hand, or train without --backbone") from None
        stem_weight = state["conv1.weight"]
        in_channels = self.features[0][0].in_channels
        if in_channels != 3:
            stem_weight = stem_weight.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
        renamed = {"0.0.weight": stem_weight}
        for key, value in state.items():
            if key.startswith("bn1."):
                renamed["0.1." + key[4:]] = value
            for index, layer in enumerate(("layer1", "layer2", "layer3", "layer4"), start=1):
                if key.startswith(layer + "."):
                    renamed[f"{index}." + key[len(layer) + 1:]] = value
        self.features.load_state_dict(renamed)
        return f"torchvision {weights}"

    def pooled_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.average_pool(features).flatten(1)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled_features(self.features(x))).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member_logits(x)[:, 0]


def _no_inplace_relu(network: nn.Module) -> None:
    # DeepLift and guided backpropagation hook ReLUs; in-place outputs break those hooks.
    for module in network.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
