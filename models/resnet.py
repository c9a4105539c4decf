"""ResNet-18 (BasicBlock x [2, 2, 2, 2]) for CWT input of shape (channels, freqs, time).

The first convolution takes the EEG channels as input planes; the head is
512→64→1 (one seizure logit). `width` scales every stage (1.0 = the
canonical 64-128-256-512; 0.125 ships).

Unlike the image ResNet, the stem and the first two stages stride along time
only: frequency is halved only in layer3 and layer4, so the last residual block
(the method's Grad-CAM layer) keeps a quarter of the frequency rows — 10 of the
default 40, at least two per EEG band — and Grad-CAM can tell delta from theta.
"""
from __future__ import annotations

import torch
from torch import nn


# (freq, time) stride of each stage: time is reduced 16x in all, frequency 4x
STAGE_STRIDES = (1, (1, 2), (2, 2), (2, 2))


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CWTResNet(nn.Module):
    """x : Tensor, shape (batch, n_channels, n_freqs, n_times) → logits (batch,)."""

    def __init__(self, n_channels: int = 23, width: float = 1.0, dropout: float = 0.3):
        super().__init__()
        widths = [max(4, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.config = {"n_channels": n_channels, "width": width, "dropout": dropout}
        self.stem = nn.Sequential(
            nn.Conv2d(n_channels, widths[0], (3, 7), (1, 2), (1, 3), bias=False), nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True))
        layers, in_ch = [], widths[0]
        for w, stride in zip(widths, STAGE_STRIDES):
            layers.append(nn.Sequential(BasicBlock(in_ch, w, stride), BasicBlock(w, w)))
            in_ch = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(in_ch, 64), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(64, 1))

    def features(self, x):
        """Activations of the last residual block (the Grad-CAM target layer)."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        return self.head(self.pool(self.features(x))).squeeze(-1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
