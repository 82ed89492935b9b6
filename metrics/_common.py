"""Helpers shared by the metric families: validation, chunked forwards, seeded noise, maps.

Conventions every metric follows (see docs/metrics.md):

- a heatmap row with any NaN/inf gives NaN for every output of that sample;
- forwards used only for scoring run in ``torch.inference_mode`` and in chunks;
- randomness is drawn per sample from a generator seeded by ``(seed, batch.index[i])``,
  so a sample's value does not depend on the batch it was computed in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.ops import Probability as Activation  # metrics read probabilities: no "logit"
from faithbench.ops import generator
from faithbench.types import Batch

Explain = Callable[..., Tensor]


def need_explain(explain: Explain | None, metric: str) -> Explain:
    if explain is None:
        raise ConfigError(f"metric {metric!r} needs explain(x, target, model=None); got None")
    return explain


def need_batch(batch: Batch | None, metric: str) -> Batch:
    if batch is None:
        raise ConfigError(f"metric {metric!r} needs the batch's ground truth (boxes or masks); got batch=None")
    return batch


def finite_rows(heatmap: Tensor) -> Tensor:
    """[B,H,W] -> [B] bool: True where the whole map is finite."""
    return torch.isfinite(heatmap).flatten(1).all(1)


def clean(heatmap: Tensor) -> tuple[Tensor, Tensor]:
    """(heatmap as float with non-finite rows zeroed, [B] bool finite rows)."""
    ok = finite_rows(heatmap)
    h = torch.where(ok[:, None, None], heatmap.float(), torch.zeros((), device=heatmap.device))
    return h, ok


def nan_where(value: Tensor, ok: Tensor) -> Tensor:
    """``value`` [B,...] with rows where ``ok`` [B] is False set to NaN."""
    shape = (-1,) + (1,) * (value.dim() - 1)
    return torch.where(ok.view(shape), value.float(), torch.full((), float("nan"), device=value.device))


def forward_chunks(model: nn.Module, n: int, make: Callable[[Tensor], Tensor],
                   chunk: int) -> Tensor:
    """Logits for ``n`` images built lazily by ``make(rows)`` [c,3,H,W], ``chunk`` images
    per forward, under inference_mode (nothing is kept for autograd). Returns [n,K]."""
    if chunk < 1:
        raise ConfigError(f"chunk={chunk!r} must be a positive number of images per forward")
    out = []
    with torch.inference_mode():
        for start in range(0, n, chunk):
            rows = torch.arange(start, min(n, start + chunk))
            out.append(model(make(rows)).float())
    return torch.cat(out)


def sample_ids(batch: Batch | None, b: int) -> list[int]:
    """Dataset positions of the batch's samples (0..B-1 when the batch has none)."""
    if batch is not None and batch.index.numel() == b:
        return [int(i) for i in batch.index.tolist()]
    return list(range(b))


def per_sample_noise(shape: tuple[int, ...], seed: int | None, ids: list[int],
                     device: torch.device, kind: Literal["normal", "uniform"] = "normal",
                     stream: int = 0) -> Tensor:
    """Noise [B,*shape], row i drawn from ``generator(seed, ids[i], stream)``: standard
    normal, or uniform on [-1, 1)."""
    rows = []
    for i in ids:
        g = generator(seed, i, device, stream)
        if kind == "normal":
            rows.append(torch.randn(shape, generator=g, device=device))
        else:
            rows.append(torch.rand(shape, generator=g, device=device) * 2 - 1)
    return torch.stack(rows)


def predictions(model: nn.Module, x: Tensor, chunk: int = 256) -> Tensor:
    """Logits [B,K] of ``x`` in chunks under inference_mode."""
    return forward_chunks(model, x.shape[0], lambda r: x[r.to(x.device)], chunk)


def resize(h: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of a [H,W] map (align_corners=False)."""
    return F.interpolate(h[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
