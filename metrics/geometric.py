"""Equivariance of maps to small geometric transforms: the map of a rotated (translated)
image should be the rotated (translated) map, compared inside the region where both
images have content."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.metrics import register
from faithbench.metrics._common import Explain, need_explain
from faithbench.metrics._stability import Transform, rotate, shift, stability
from faithbench.params import Count, Fraction, NonEmpty
from faithbench.types import Batch

# Inner lists, not tuples: the YAML default must compare equal after list(default).
_SHIFTS = ([0.0, 0.05], [0.0, -0.05], [0.05, 0.0], [-0.05, 0.0])


@register(higher_is_better=True, context=("explain",),
          outputs={"rotation_stability_topk_iou": True},
          curve_axes={f"rotation_stability{k}_curve": "rotation (degrees)" for k in ("", "_topk_iou")})
def rotation_stability(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                       batch: Batch | None = None, explain: Explain | None = None,
                       angles: Annotated[Sequence[float], NonEmpty()] = (-10.0, -5.0, 5.0, 10.0),
                       topk: Fraction = 0.1, absolute: bool = False,
                       chunk: Count = 128) -> dict[str, Tensor]:
    """Spearman correlation (and top-k IoU) between ``explain(rotate(x))`` and
    ``rotate(map)`` for each angle (degrees, about the centre, bilinear; the image is
    filled with 0 = the mean colour outside), over the pixels whose whole bilinear
    footprint lies inside the original image; NaN where the top-1 class changes.

    Args:
        explain: ``explain(x, target) -> [B,H,W]``. angles: in degrees.
        absolute: compare |maps|. chunk: images per forward.
    Returns:
        ``rotation_stability`` [B] mean Spearman over angles; ``_topk_iou``,
        ``_unchanged`` [B]; ``rotation_stability_curve``, ``_topk_iou_curve`` [B,A] and
        their ``_x`` (the angles).
        Costs A explanations and A+1 forwards per sample.
    """
    explain = need_explain(explain, "rotation_stability")

    def rotated(angle: float) -> Transform:
        def make(z: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            ones = torch.ones(1, 1, *z.shape[-2:], dtype=z.dtype, device=z.device)
            valid = rotate(ones, angle)[0, 0] > 1 - 1e-4
            return rotate(z, angle), rotate(h[:, None], angle)[:, 0], valid
        return make

    return stability("rotation_stability", model, x, heatmap, target, explain,
                     [rotated(float(a)) for a in angles], topk, absolute, chunk,
                     levels=[float(a) for a in angles])


@register(higher_is_better=True, context=("explain",),
          outputs={"translation_stability_topk_iou": True},
          curve_axes={f"translation_stability{k}_curve": "shift (index in shifts)"
                      for k in ("", "_topk_iou")})
def translation_stability(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                          batch: Batch | None = None, explain: Explain | None = None,
                          shifts: Annotated[Sequence[Sequence[float]], NonEmpty()] = _SHIFTS,
                          topk: Fraction = 0.1, absolute: bool = False,
                          chunk: Count = 128) -> dict[str, Tensor]:
    """Spearman correlation (and top-k IoU) between ``explain(shift(x))`` and
    ``shift(map)`` for each shift ``(dy, dx)`` given as fractions of (H, W) and rounded
    to whole pixels (exact, no interpolation; the image is filled with 0 = the mean
    colour), over the pixels that came from inside the image; NaN where the top-1 class
    changes.

    Args:
        explain: ``explain(x, target) -> [B,H,W]``. shifts: ``[[dy, dx], ...]``.
    Returns:
        ``translation_stability`` [B] mean Spearman over shifts; ``_topk_iou``,
        ``_unchanged`` [B]; ``translation_stability_curve``, ``_topk_iou_curve`` [B,S] and
        their ``_x`` (the shift's index).
        Costs S explanations and S+1 forwards per sample.
    """
    explain = need_explain(explain, "translation_stability")
    hh, ww = x.shape[-2:]

    def shifted(dy: int, dx: int) -> Transform:
        def make(z: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            ones = torch.ones(hh, ww, dtype=torch.bool, device=z.device)
            return shift(z, dy, dx), shift(h, dy, dx), shift(ones, dy, dx)
        return make

    if any(not hasattr(s, "__len__") or len(s) != 2 for s in shifts):
        raise ConfigError(f"shifts={[list(s) for s in shifts]!r} must be [dy, dx] pairs "
                          "(fractions of the image's height and width)")
    pixels = [(round(float(dy) * hh), round(float(dx) * ww)) for dy, dx in shifts]
    return stability("translation_stability", model, x, heatmap, target, explain,
                     [shifted(dy, dx) for dy, dx in pixels], topk, absolute, chunk,
                     levels=list(range(len(pixels))))
