"""The classifier: a compact CNN sized to the image, wrapped with its own preprocessing.

`ImageClassifier` is what the rest of the lab holds. It takes float pixels in [0, 1]
(N x C x H x W, any H x W), resizes them to the size the network was trained at, normalises
them with the training set's statistics, and returns calibrated logits (temperature-scaled,
and re-targeted to the calibration prior), so that ``softmax(model(x))`` is the calibrated
probability. Resizing inside the module lets studies
show clinicians the full-resolution image while the network reads a smaller copy, and lets
saliency methods attribute at the resolution the clinician sees.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xai_lab.model.locking import MODEL_LOCK
from xai_lab.model.resnet import ResNet18Network

STEMS = ("double", "single", "strided")
BACKBONES = ("small_cnn", "resnet18")
IMPORTED = "imported"  # a network trained elsewhere (`xai_lab.model.imported`), held by the same wrapper


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to rebuild the architecture before loading weights.

    stem: what reads the full-resolution input. "double": two 3x3 convolutions (small images,
    where every pixel counts); "single": one 3x3 convolution; "strided": a 4x4 convolution
    with stride 2, so large inputs are read at full resolution but processed at half, which
    halves CPU cost without the detail lost by resizing the image first.
    """

    in_channels: int
    n_classes: int
    input_size: int
    base_width: int
    stem: str = "double"
    max_width: int = 128
    # Side the last feature map is halved down to (at least). Cards written before this field
    # existed used 7; `for_input` now chooses 14 above 48 px (see `n_downsamples`).
    final_map_target: int = 7
    # Networks in the deep ensemble (Lakshminarayanan et al. 2017): independent members held as
    # channel groups of one network (see `SmallCNN`). Cards written before this field existed: 1.
    members: int = 1
    # "small_cnn" (`SmallCNN`, the default), "resnet18" (`xai_lab.model.resnet`, pretrained) or "imported"
    # (a researcher's own network, `xai_lab.model.imported`: built from its card, not from this spec).
    backbone: str = "small_cnn"

    @classmethod
    def for_input(cls, in_channels: int, n_classes: int, input_size: int, members: int = 1) -> NetworkSpec:
        if input_size <= 48:
            # Small images (MedMNIST's 28 px): a 7-px map already has cells of at most 7 px, and
            # this depth is what reached PneumoniaMNIST AUROC 0.983 (a 14-px map gave 0.970).
            return cls(in_channels, n_classes, input_size, base_width=32, stem="double", final_map_target=7,
                       members=members)
        stem = "single" if input_size <= 96 else "strided"
        return cls(in_channels, n_classes, input_size, base_width=16, stem=stem, final_map_target=14,
                   members=members)

    @classmethod
    def for_backbone(cls, backbone: str, in_channels: int, n_classes: int, input_size: int,
                     members: int = 1) -> NetworkSpec:
        if backbone == "resnet18":
            return cls(in_channels, n_classes, input_size, base_width=64, stem="resnet", backbone=backbone)
        return cls.for_input(in_channels, n_classes, input_size, members=members)

    @property
    def n_downsamples(self) -> int:
        """Halve the resolution down to `final_map_target`: 28 -> 7 (small images), 64 -> 16, 128 -> 16.

        Why not the usual 7-8: Grad-CAM (and Guided Grad-CAM, which multiplies by it) can only
        be as sharp as the last feature map. Measured on the default synthetic set (80 test
        lesions, about 1% of the image each): with an 8 x 8 map Grad-CAM's relevance mass was
        0.06 and Guided Grad-CAM's 0.40; with 16 x 16, 0.28 and 0.63, at equal accuracy
        (test AUROC 0.973 vs 0.969). See docs/explanations.md.
        """
        return max(1, int(math.floor(math.log2(self.input_size / self.final_map_target))))

    @property
    def final_map_size(self) -> int:
        """Side of the last feature map: each downsampling (strided stem or 2x2 pool) floors a half."""
        size = self.input_size
        for _ in range(self.n_downsamples):
            size //= 2
        return size

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                  groups: int = 1) -> list[nn.Module]:
    # ReLU is not in-place: DeepLift and guided backpropagation hook every ReLU, and in-place
    # outputs break those hooks.
    return [nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=(kernel - stride) // 2, bias=False,
                      groups=groups),
            nn.BatchNorm2d(out_channels), nn.ReLU()]


def _stem(spec: NetworkSpec, width: int) -> nn.Sequential:
    # The first convolution reads the image for every member at once (its output channels fall
    # into the members' groups); every later one is grouped, so no member sees another's features.
    k = spec.members
    if spec.stem == "double":
        return nn.Sequential(*_conv_bn_relu(spec.in_channels, k * width),
                             *_conv_bn_relu(k * width, k * width, groups=k))
    if spec.stem == "single":
        return nn.Sequential(*_conv_bn_relu(spec.in_channels, k * width))
    if spec.stem == "strided":
        return nn.Sequential(*_conv_bn_relu(spec.in_channels, k * width, kernel=4, stride=2))
    raise ValueError(f"stem must be one of {STEMS}, got {spec.stem!r}")


class SmallCNN(nn.Module):
    """A stem, then stages of max-pooling and two 3x3 convolutions (VGG style) down to about
    16 x 16, then average- and max-pooled features into a linear head. ``features[-1]`` is the
    last convolutional block (Grad-CAM's usual target layer).

    An ensemble of `spec.members` networks is one network whose channels fall into one group
    per member, with grouped convolutions and a grouped head: mathematically K independent
    networks (each has its own weights, BatchNorm statistics and head), but one set of layers,
    so ``features[-1]`` holds every member's last feature map and Grad-CAM, hooks and the
    randomisation cascade see the ensemble as one model. Cost on this project's 2-core CPU (a
    training step of 64 images): three members take 2.9x one network at 28 px and 4.1x at 128 px,
    where PyTorch's grouped convolutions are slower than three separate passes would be; the
    simplicity for explanation was judged worth that.
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        k = spec.members
        pools = spec.n_downsamples - (1 if spec.stem == "strided" else 0)
        widths = [min(spec.base_width * 2**i, spec.max_width) for i in range(pools + 1)]
        stages: list[nn.Module] = [_stem(spec, widths[0])]
        for previous, width in zip(widths, widths[1:], strict=False):
            stages.append(nn.Sequential(nn.MaxPool2d(2), *_conv_bn_relu(k * previous, k * width, groups=k),
                                        *_conv_bn_relu(k * width, k * width, groups=k)))
        self.features = nn.Sequential(*stages)
        self.members = k
        # Average pooling suits diffuse findings; max pooling keeps a small focal lesion from
        # being diluted by the rest of the image. The head sees both. Both are modules (the max
        # pool spans the whole final map) so attribution rules such as DeepLift's apply to them.
        self.average_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.MaxPool2d(spec.final_map_size)
        head = nn.Linear(2 * widths[-1], spec.n_classes) if k == 1 else \
            nn.Conv1d(k * 2 * widths[-1], k * spec.n_classes, 1, groups=k)
        self.head = nn.Sequential(nn.Dropout(0.2), head)

    def pooled_features(self, features: torch.Tensor) -> torch.Tensor:
        """The head's input, N x (members x 2 x channels): each member's average- then max-pooled
        last feature map (a member's channels are contiguous in a grouped convolution's output)."""
        n = features.shape[0]
        average = self.average_pool(features).view(n, self.members, -1)
        maximum = self.max_pool(features).view(n, self.members, -1)
        return torch.cat([average, maximum], dim=2).view(n, -1)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's logits, N x members x classes."""
        pooled = self.pooled_features(self.features(x))
        if self.members == 1:
            return self.head(pooled).unsqueeze(1)
        n = x.shape[0]
        return self.head(pooled.view(n, -1, 1)).view(n, self.members, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the ensemble's mean probability: log(mean over members of softmax).

        A single network returns its own logits unchanged (equal to the above up to a constant
        per image, which softmax ignores), so attribution of one network is what it always was.
        """
        member_logits = self.member_logits(x)
        if self.members == 1:
            return member_logits[:, 0]
        return torch.logsumexp(F.log_softmax(member_logits, dim=2), dim=1) - math.log(self.members)


class ImageClassifier(nn.Module):
    """Preprocessing + a network + temperature: the unit saved, loaded and explained.

    network: given for an imported model (`xai_lab.model.imported.ImportedNetwork`); otherwise built from
    the spec. mean and std have one value per channel the network reads: an imported network that reads
    three channels from grey images gets the grey channel repeated by the normalisation's broadcasting.
    """

    def __init__(self, spec: NetworkSpec, mean: list[float], std: list[float],
                 network: nn.Module | None = None) -> None:
        super().__init__()
        self.spec = spec
        if network is not None:
            self.network = network
        elif spec.backbone == IMPORTED:
            raise ValueError("an imported model's network is built from its card (xai_lab.model.storage.load_model)")
        else:
            self.network = ResNet18Network(spec.in_channels, spec.n_classes) if spec.backbone == "resnet18" \
                else SmallCNN(spec)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("temperature", torch.ones(()))
        # Added to the scaled logits: -log(training prevalence) re-targets probabilities to equal
        # class prevalence (Saerens et al. 2002); zeros keep the training prevalence.
        self.register_buffer("logit_bias", torch.zeros(spec.n_classes))
        # Decision threshold on P(positive class) for binary tasks; unused for multi-class.
        self.register_buffer("threshold", torch.tensor(0.5))

    @property
    def imported(self) -> bool:
        return self.spec.backbone == IMPORTED

    @property
    def hookable(self) -> bool:
        """Whether the network's layers take hooks (Grad-CAM, DeepLift): all but an imported TorchScript file."""
        return not (self.imported and self.network.is_torchscript)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.network.gradcam_layer if self.imported else self.network.features[-1]

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Resize to the training size and normalise; differentiable, so saliency flows back."""
        if images.shape[-2:] != (self.spec.input_size, self.spec.input_size):
            images = resize_images(images, self.spec.input_size)
        return (images - self.mean) / self.std

    def uncalibrated_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.prepare(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.uncalibrated_logits(images) / self.temperature + self.logit_bias

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Calibrated class probabilities (N, n_classes), computed in batches (waiting for any explanation
        of this model in another thread: its hooks would fire in this pass, see `xai_lab.model.locking`)."""
        with MODEL_LOCK:
            chunks = [torch.softmax(self(images[i:i + batch_size]), dim=1)
                      for i in range(0, len(images), batch_size)]
        return torch.cat(chunks) if chunks else torch.empty(0, self.spec.n_classes)

    def decide(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Labels from probabilities: the validation-chosen threshold for binary, argmax otherwise."""
        if probabilities.shape[1] == 2:
            return (probabilities[:, 1] >= self.threshold).long()
        return probabilities.argmax(dim=1)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize, the same for training data and at prediction time."""
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
