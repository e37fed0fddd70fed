"""Segmentation models by name: U-Nets on a light timm encoder, and the plain U-Net for FPGA-style targets.

Names (any of them works wherever a model name is taken: ``--student``, ``--teacher-arch``, ``timm:`` teachers):

- ``unet_plain<W>`` (e.g. ``unet_plain16``): :class:`~edgekd.models.unet.TinyUNet` with first-level width W and
  4 levels; only conv / ReLU / max-pool / nearest upsample / concat (BatchNorm folds into the convs), the op set
  FINN-style dataflow compilers take. ``unet_plain32`` is the default teacher.
- ``unet_<timm encoder>`` (e.g. ``unet_mobilenetv3_large_100``, ``unet_efficientnet_b0``, ``unet_mobilevit_xs``,
  ``unet_resnet18``): the encoder's multi-scale features (timm ``features_only``) and a small U-Net decoder
  (nearest upsample, concat, two conv-BN-ReLU per level). The encoder starts from timm's ImageNet weights,
  a file or random weights as ``edgekd.models.pretrained`` decides (``--student-weights``...).

Every model maps [N, 3, H, W] to per-pixel class logits [N, classes, H, W]; H and W must be multiples of 32
(segmentation data is sized so).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import ModelError, reason

PLAIN = re.compile(r"^unet_plain(\d+)$")
PREFIX = "unet_"
DECODER = (128, 64, 32, 16, 16)  # channels of the decoder levels, deepest first


def is_seg_model(name: str) -> bool:
    return name.startswith(PREFIX)


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class EncoderUNet(nn.Module):
    """A timm encoder (``features_only``) with a U-Net decoder: each level upsamples x2 (nearest), concatenates
    the encoder feature of that scale and applies two 3x3 conv-BN-ReLU; the last level returns to full size."""

    def __init__(self, encoder: str, num_classes: int, pretrained: bool = False,
                 module: nn.Module | None = None) -> None:
        super().__init__()
        import timm

        if module is not None:  # an encoder already built with its weights (edgekd.models.pretrained)
            self.encoder = module
        elif not timm.is_model(encoder):
            import difflib

            close = difflib.get_close_matches(encoder, timm.list_models(), n=3)
            hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
            raise ModelError(f"unknown segmentation encoder {encoder!r} (unet_<timm name>){hint}")
        else:
            self._create_encoder(encoder, pretrained)
        chans, reds = self.encoder.feature_info.channels(), self.encoder.feature_info.reduction()
        if reds[-1] > 32 or len(chans) < 2:
            raise ModelError(f"timm {encoder!r} does not give multi-scale features a U-Net can use")
        self.reductions = reds
        self.blocks = nn.ModuleList()
        c = chans[-1]
        # decoder levels: one per encoder feature below the deepest, then up to full resolution
        skips = list(reversed(chans[:-1])) + [0] * (0 if reds[0] == 1 else int(round(torch.log2(
            torch.tensor(float(reds[0]))).item())))
        for i, skip in enumerate(skips):
            out = DECODER[min(i, len(DECODER) - 1)]
            self.blocks.append(nn.Sequential(_conv(c + skip, out), _conv(out, out)))
            c = out
        self.head = nn.Conv2d(c, num_classes, 1)

    def _create_encoder(self, encoder: str, pretrained: bool) -> None:
        import timm

        try:
            self.encoder = timm.create_model(encoder, features_only=True, pretrained=pretrained)
        except Exception as exc:  # noqa: BLE001 - timm's errors (no features_only, hub access) become one line
            raise ModelError(f"cannot build a U-Net encoder from timm {encoder!r}: {reason(exc)}") from exc

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        y = feats[-1]
        skips = list(reversed(feats[:-1]))
        for i, block in enumerate(self.blocks):
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            if i < len(skips):
                y = torch.cat([y, skips[i]], 1)
            y = block(y)
        return self.head(y)


class PlainUNet(nn.Module):
    """TinyUNet with a ``get_classifier`` (so a checkpoint with another class count re-heads cleanly)."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        from edgekd.models.unet import TinyUNet

        self.net = TinyUNet(num_classes=num_classes, width=width, depth=4)

    def get_classifier(self) -> nn.Module:
        return self.net.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def create_seg(name: str, num_classes: int, pretrained: bool = False) -> nn.Module:
    """A segmentation model by name (see the module doc)."""
    m = PLAIN.match(name)
    if m:
        width = int(m.group(1))
        if not 1 <= width <= 256:
            raise ModelError(f"{name}: the width must be 1..256")
        return PlainUNet(width, num_classes)
    if not name.startswith(PREFIX) or len(name) == len(PREFIX):
        raise ModelError(f"unknown segmentation model {name!r}: use unet_plain<W> or unet_<timm encoder>")
    return EncoderUNet(name[len(PREFIX):], num_classes, pretrained)


def pixel_prior(masks, num_classes: int, floor: float = 1e-4) -> torch.Tensor:
    """Each class's share of the pixels of ``masks`` ([N, H, W] class indices; 255 = ignore), floored so a class
    absent from the masks still gets a finite log."""
    m = torch.as_tensor(masks).reshape(-1).long()
    m = m[(m >= 0) & (m < num_classes)]
    counts = torch.bincount(m, minlength=num_classes).double()
    p = counts / counts.sum().clamp(min=1)
    p = p.clamp(min=floor)
    return (p / p.sum()).float()


@torch.no_grad()
def init_head_prior(model: nn.Module, prior: torch.Tensor) -> None:
    """Start a fresh segmentation head at the class prior (Lin et al. 2017, RetinaNet's prior initialisation):
    near-zero weights and bias log(p), so the first prediction is every pixel at the data's class shares.

    A thin foreground class (cracks: 1.6 % of CrackForest's pixels) otherwise starts at whatever the random head says; a
    start that calls every pixel foreground took 8 of 40 epochs to recover on CrackForest (seed 1), and that one
    bad start made most of the spread between seeds."""
    head = model.get_classifier()
    nn.init.normal_(head.weight, std=0.01)
    head.bias.copy_(prior.log().to(head.bias))


def start_at_prior(model: nn.Module, data, start: dict, samples: int = 256) -> None:
    """:func:`init_head_prior` for a segmentation model whose head is new (random start, ImageNet encoder, a
    file whose head did not fit), from the pixel shares of up to ``samples`` training masks; recorded in
    ``start['head_init']`` (model card, manifest). A head that came with its weights is left alone."""
    if data.task != "segment" or start.get("head") == "kept":
        return
    prior = pixel_prior(data.train.head(samples).targets(data.preprocess), len(data.classes))
    init_head_prior(model, prior)
    shares = ", ".join(f"{c} {100 * float(p):.1f}%" for c, p in zip(data.classes, prior, strict=True))
    start["head_init"] = f"class prior ({shares})"
