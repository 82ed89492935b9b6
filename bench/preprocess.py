"""Geometry and normalisation from raw RGB images to model input, ground truth included."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from faithbench.errors import ConfigError, unknown_choice

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Geometry:
    """Where a raw (h, w) image lands: resized to ``resized`` then cropped at ``top, left``
    to ``size``. ``scale``/``offset`` map back: ``orig = (input + offset) * scale``."""

    orig: tuple[int, int]
    resized: tuple[int, int]
    top: int
    left: int
    size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        return (self.orig[0] / self.resized[0], self.orig[1] / self.resized[1])

    @property
    def offset(self) -> tuple[float, float]:
        return (float(self.top), float(self.left))


@dataclass(frozen=True)
class Preprocess:
    """How a raw RGB image with values in [0, 1] becomes model input.

    Args:
        size: output side ("center_crop", "stretch") or shorter side ("shorter_side").
        resize: "center_crop" resizes the shorter side to ``size / crop_pct`` and crops
            the centre (timm/torchvision eval); "stretch" resizes to ``size x size``;
            "shorter_side" resizes the shorter side to ``size`` and keeps the aspect
            (TorchRay's pointing game).
        mean, std: per-channel normalisation in the model's channel order and scale.
        bgr: the model takes BGR channels (Caffe checkpoints).
        pixel_scale: 255 for models that take 0-255 pixels.
        antialias: low-pass before downsampling (PIL / torchvision tensors); False is a
            plain ``F.interpolate`` (TorchRay's transform, Torch's ``image.scale``).
        size_rounding: how the resized sides are rounded: "round" (nearest), or "floor"
            (TorchRay's ``int(size * long / short)``).
    """

    size: int = 224
    resize: Literal["center_crop", "stretch", "shorter_side"] = "center_crop"
    crop_pct: float = 0.875
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bgr: bool = False
    pixel_scale: float = 1.0
    antialias: bool = True
    size_rounding: Literal["round", "floor"] = "round"

    def geometry(self, h: int, w: int) -> Geometry:
        if self.resize == "stretch":
            return Geometry((h, w), (self.size, self.size), 0, 0, (self.size, self.size))
        short = self.size / self.crop_pct if self.resize == "center_crop" else self.size
        rh, rw = self._side(h, short, min(h, w)), self._side(w, short, min(h, w))
        if self.resize == "shorter_side":
            return Geometry((h, w), (rh, rw), 0, 0, (rh, rw))
        top, left = (rh - self.size) // 2, (rw - self.size) // 2
        return Geometry((h, w), (rh, rw), top, left, (self.size, self.size))

    def _side(self, n: int, short: float, m: int) -> int:
        """A side of ``n`` pixels resized by ``short / m`` (``m``: the shorter side)."""
        if self.size_rounding == "floor":  # short * n / m is exact for integer sizes
            return max(1, math.floor(short * n / m))
        return max(1, round(n * (short / m)))

    def image(self, img: Tensor, g: Geometry) -> Tensor:
        """Raw RGB [3,h,w] in [0,1] -> normalised model input [3,H,W]."""
        x = F.interpolate(img[None].float(), size=g.resized, mode=self.interpolation,
                          antialias=self.antialias, align_corners=False)[0]
        x = x[:, g.top : g.top + g.size[0], g.left : g.left + g.size[1]].clamp(0, 1)
        return self.normalize(x)

    def normalize(self, x: Tensor) -> Tensor:
        """RGB [...,3,H,W] in [0,1] -> model input."""
        if self.bgr:
            x = x.flip(-3)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * self.pixel_scale - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Model input [...,3,H,W] -> RGB in [0,1] (for figures)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        x = (x * std + mean) / self.pixel_scale
        return (x.flip(-3) if self.bgr else x).clamp(0, 1)

    @staticmethod
    def boxes(boxes: Tensor, g: Geometry) -> tuple[Tensor, Tensor]:
        """xyxy boxes [N,4] in original pixels -> (boxes clipped to the input, keep [N]).
        Boxes that fall wholly outside a crop are dropped (keep is False)."""
        sy, sx = g.scale
        b = boxes.float().clone()
        b[:, [0, 2]] = b[:, [0, 2]] / sx - g.left
        b[:, [1, 3]] = b[:, [1, 3]] / sy - g.top
        b[:, [0, 2]] = b[:, [0, 2]].clamp(0, g.size[1])
        b[:, [1, 3]] = b[:, [1, 3]].clamp(0, g.size[0])
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        return b, keep

    @staticmethod
    def masks(masks: Tensor, g: Geometry) -> Tensor:
        """Bool masks [M,h,w] in original pixels -> [M,H,W] (nearest neighbour)."""
        if masks.numel() == 0:
            return torch.zeros(0, *g.size, dtype=torch.bool)
        m = F.interpolate(masks[:, None].float(), size=g.resized, mode="nearest")[:, 0]
        return m[:, g.top : g.top + g.size[0], g.left : g.left + g.size[1]] > 0.5


CHOICES = {"resize": ("center_crop", "stretch", "shorter_side"),
           "interpolation": ("bilinear", "bicubic"), "size_rounding": ("round", "floor")}


def with_overrides(pre: Preprocess, overrides: Mapping[str, Any] | None) -> Preprocess:
    """``pre`` with some fields replaced (``model.preprocess`` in a config: a preset that
    replays a paper's input pipeline on a model whose own transform differs).

    Args:
        pre: the model's own preprocessing.
        overrides: field -> value; lists become tuples (``mean``, ``std``).
    Returns:
        a new Preprocess; ``pre`` itself when ``overrides`` is empty or None.
    Raises:
        ConfigError: an unknown field or choice, naming the valid ones.
    """
    if not overrides:
        return pre
    fields = [f.name for f in dataclasses.fields(Preprocess)]
    out: dict[str, Any] = {}
    for k, v in overrides.items():
        if k not in fields:
            raise ConfigError(f"model.preprocess has no field {k!r}. Valid fields: {', '.join(fields)}.")
        if k in CHOICES and v not in CHOICES[k]:
            raise unknown_choice(f"model.preprocess.{k}", v, CHOICES[k])
        if k in ("mean", "std"):
            if len(v) != 3:
                raise ConfigError(f"model.preprocess.{k} needs 3 values, got {list(v)}")
            v = tuple(float(c) for c in v)
        out[k] = v
    return dataclasses.replace(pre, **out)
