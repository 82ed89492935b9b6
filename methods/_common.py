"""Helpers shared by the attribution methods: input checks, channel reduction, chunking.

A module starting with ``_`` is not registered as a method.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor

from faithbench.errors import ConfigError, check_choice

Reduce = Literal["sum", "abs_sum", "max_abs"]
REDUCTIONS = ("sum", "abs_sum", "max_abs")


def check_inputs(x: Tensor, target: Tensor) -> Tensor:
    """Validate a batch and its per-sample targets.

    Args:
        x: images [B,3,H,W] (any float dtype).
        target: class index per sample [B], integer.

    Returns:
        ``target`` as int64 on ``x.device`` [B].
    """
    if x.dim() != 4:
        raise ConfigError(f"x must be a batch of images [B,C,H,W], got shape {tuple(x.shape)}")
    if not isinstance(target, Tensor):
        target = torch.as_tensor(target)
    if target.dim() != 1 or target.shape[0] != x.shape[0]:
        raise ConfigError(
            f"target must hold one class index per sample, shape [{x.shape[0]}], "
            f"got shape {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ConfigError(f"target must be an integer tensor, got dtype {target.dtype}")
    return target.to(device=x.device, dtype=torch.int64)


def reduce_channels(a: Tensor, how: str) -> Tensor:
    """Reduce channel attributions [B,C,H,W] to a map [B,H,W] (float32).

    "sum" keeps signs (and completeness for integrated gradients), "abs_sum" sums
    magnitudes, "max_abs" is Simonyan et al.'s max over channels of the magnitude.
    """
    check_choice("reduce", how, REDUCTIONS)
    if how == "sum":
        out = a.sum(1)
    elif how == "abs_sum":
        out = a.abs().sum(1)
    else:
        out = a.abs().amax(1)
    return out.float()


def check_chunk(chunk: int) -> int:
    """``chunk`` as an int, or a ConfigError when it is not a positive number of images."""
    if int(chunk) < 1:
        raise ConfigError(f"chunk must be a positive number of images per forward, got {chunk}")
    return int(chunk)


def chunk_pairs(batch: int, n: int, chunk: int, device: torch.device) -> Iterable[tuple[Tensor, Tensor]]:
    """(sample, perturbation) index pairs in chunks of at most ``chunk``.

    Pairs run perturbation-major (all samples of perturbation 0, then of 1, ...) so a
    chunk needs few distinct perturbations, which can then be built once per chunk.

    Yields:
        (b [n], p [n]) int64 tensors on ``device``.
    """
    chunk = check_chunk(chunk)
    total = batch * n
    for start in range(0, total, chunk):
        j = torch.arange(start, min(start + chunk, total), device=device)
        yield j % batch, j // batch

