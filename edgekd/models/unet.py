"""A minimal U-Net (conv/ReLU, max-pool down, nearest upsample, skip concat): the plain op set FPGA flows
accept. Small on purpose: a test and pre-flight model, and the seed of the segmentation students."""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class TinyUNet(nn.Module):
    """``depth`` down/up levels of ``width * 2**level`` channels; input sides must be multiples of 2**depth.

    Args:
        num_classes: output channels (per-pixel class logits).
        width: channels of the first level.
        depth: number of pooling steps.
        in_chans: input channels.
    """

    def __init__(self, num_classes: int = 2, width: int = 8, depth: int = 2, in_chans: int = 3) -> None:
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_chans, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = nn.ModuleList([_block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()
        for block in self.dec:
            x = block(torch.cat([self.up(x), skips.pop()], 1))
        return self.head(x)
