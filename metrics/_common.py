"""Helpers shared by the metric families: validation, class scores, seeded noise, maps.

Conventions every metric follows (see docs/metrics.md):

- a heatmap row with any NaN/inf gives NaN for every output of that sample;
- forwards used only for scoring run in ``torch.inference_mode`` and in chunks;
- randomness is drawn per sample from a generator seeded by ``(seed, batch.index[i])``,
  so a sample's value does not depend on the batch it was computed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench.errors import ConfigError, unknown_choice
from faithbench.types import Batch

Activation = Literal["softmax", "sigmoid"]
Explain = Callable[..., Tensor]


def check_choice(kind: str, value: object, choices: Iterable[str]) -> None:
    """Raise ConfigError naming ``value`` and the valid ``choices`` if it is not one."""
    choices = list(choices)
    if value not in choices:
        raise unknown_choice(kind, value, choices)


def check_range(name: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    """Raise ConfigError unless ``lo <(=) value <= hi``."""
    ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bracket = "(" if lo_open else "["
        raise ConfigError(f"{name}={value!r} is out of range; valid: {bracket}{lo}, {hi}]")


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


def probabilities(logits: Tensor, target: Tensor, activation: Activation | None) -> Tensor:
    """Class score of ``target`` [N] from ``logits`` [N,K]: softmax probability, or the
    sigmoid of the logit for multi-label models."""
    act = activation or "softmax"
    check_choice("activation", act, ["softmax", "sigmoid"])
    t = target.to(logits.device).long()[:, None]
    if act == "softmax":
        return logits.float().log_softmax(1).gather(1, t)[:, 0].exp()
    return logits.float().gather(1, t)[:, 0].sigmoid()


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


def generator(seed: int | None, sample: int, device: torch.device, stream: int = 0) -> torch.Generator:
    """A generator for one sample: a fixed function of (seed, sample, stream)."""
    g = torch.Generator(device=device)
    g.manual_seed(((seed or 0) * 1_000_003 + sample * 7_919 + stream * 104_729) % (2**63 - 1))
    return g


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


def minmax(h: Tensor) -> Tensor:
    """Per-sample min-max normalisation of [B,H,W] to [0,1]; a constant map gives zeros."""
    flat = h.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = (hi - lo)[:, None, None]
    out = (h - lo[:, None, None]) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, out, torch.zeros_like(out))


def predictions(model: nn.Module, x: Tensor, chunk: int = 256) -> Tensor:
    """Logits [B,K] of ``x`` in chunks under inference_mode."""
    return forward_chunks(model, x.shape[0], lambda r: x[r.to(x.device)], chunk)


def resize(h: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of a [H,W] map (align_corners=False)."""
    return F.interpolate(h[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
