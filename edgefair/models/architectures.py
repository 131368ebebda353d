"""FER architectures that export cleanly to ONNX and TFLite (static shapes, no dynamic ops)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def _conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                  act: type = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        act(),
    )


class GlobalAvgPool(nn.Module):
    """Mean over H and W then flatten: a ReduceMean in ONNX, MEAN in TFLite."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class CompactCNN(nn.Module):
    """Three Conv-BN-ReLU-MaxPool blocks, global pooling, dropout, one linear layer.

    With the default widths (24, 48, 96) it has about 53 k parameters and trains to
    ≥ 85 % on default synthfer in about two minutes on 2 cores; widths (16, 32, 64)
    give the ≈ 25 k-parameter CNN of RESEARCH.md's reference timings.
    """

    def __init__(self, *, num_classes: int = 7, in_channels: int = 1, widths: tuple[int, ...] = (24, 48, 96),
                 dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for w in widths:
            layers += [_conv_bn_relu(cin, w), nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = GlobalAvgPool()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.features(x))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_relu(cin, hidden, k=1, act=nn.ReLU6))
        layers += [
            _conv_bn_relu(hidden, hidden, k=3, stride=stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_res else out


def _make_divisible(v: float, divisor: int = 8) -> int:
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class MobileNetV2Small(nn.Module):
    """MobileNetV2-style net for 48×48 faces, with a width multiplier."""

    # (expand, channels, repeats, stride) — the ImageNet table shortened for 48×48 input
    CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1))

    def __init__(self, *, num_classes: int = 7, in_channels: int = 1, width: float = 1.0, dropout: float = 0.2):
        super().__init__()
        cin = _make_divisible(32 * width)
        layers: list[nn.Module] = [_conv_bn_relu(in_channels, cin, stride=1, act=nn.ReLU6)]
        for t, c, n, s in self.CFG:
            cout = _make_divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = _make_divisible(256 * max(1.0, width))
        layers.append(_conv_bn_relu(cin, last, k=1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = GlobalAvgPool()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.features(x))))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn_relu(cin, cout, stride=stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else nn.Identity()
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.short(x))


class ResNet18Small(nn.Module):
    """ResNet-18 layout (2-2-2-2 basic blocks) with a 3×3 stem and no max-pool, for small inputs."""

    def __init__(self, *, num_classes: int = 7, in_channels: int = 1, width: float = 0.5):
        super().__init__()
        w = [max(8, int(c * width)) for c in (64, 128, 256, 512)]
        layers: list[nn.Module] = [_conv_bn_relu(in_channels, w[0])]
        cin = w[0]
        for i, c in enumerate(w):
            for j in range(2):
                layers.append(BasicBlock(cin, c, 2 if (j == 0 and i > 0) else 1))
                cin = c
        self.features = nn.Sequential(*layers)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "cnn": CompactCNN,
    "mobilenetv2": MobileNetV2Small,
    "resnet18": ResNet18Small,
}


def build_model(arch: str, *, num_classes: int, in_channels: int, **kwargs) -> nn.Module:
    """Instantiate an architecture by name (``cnn``, ``mobilenetv2``, ``resnet18``)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{arch}': expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_classes=num_classes, in_channels=in_channels, **kwargs)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, non-zero) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    return total, nonzero
