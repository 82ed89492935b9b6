"""The order in which perturbation curves (``deletion``, ``insertion``, ``abpc``) take
pixels, and the rule that orders pixels of equal saliency (``ties``).

Ties are common, not rare: ReLU'd CAM maps are often mostly exact zeros (64% of a
Grad-CAM map on the bundled shapes), and a 224x224 map holds fewer distinct values than
pixels. How ties are ordered moves the AUC (docs/metrics.md gives measured sizes), so it
is a named convention:

- ``random``: a uniformly random order among tied pixels, drawn per sample from
  ``generator(seed, sample, TIE_STREAM)`` on the CPU, so a sample's value depends on
  neither its batch nor the device. Unbiased: no image region is favoured.
- ``rise``: RISE's ``np.flip(np.argsort(sal.reshape(-1)))`` (eclique/RISE,
  evaluation.py, ``CausalMetric``), computed by numpy itself on the CPU. numpy's default
  argsort is an introsort (SIMD-accelerated on x86), not stable: its tie order is an
  implementation detail of the numpy build and the CPU, so only numpy reproduces it.
- ``stable``: raster order among ties (the lower flattened index first).

LeRF (least relevant first, ``abpc``) is MoRF of the negated map under the same rule:
``stable`` and ``random`` break ties the same way in both directions (a constant map
gives one order for both, so ``abpc`` = 0 exactly), ``rise`` is
``np.flip(np.argsort(-sal))``, RISE's rule applied to the negated map.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from faithbench.errors import check_choice
from faithbench.ops import generator

Ties = Literal["random", "rise", "stable"]
TIES: tuple[str, ...] = get_args(Ties)
TIE_STREAM = 300  # per-sample generator stream of the random tie order (robustness: 100, 200)


def order_of(heatmap: Tensor, order: Literal["morf", "lerf"], ties: Ties = "random",
             seed: int | None = None, ids: list[int] | None = None) -> Tensor:
    """Pixels in the order they are perturbed, [B,H*W] int64 flat indices: ``morf`` most
    relevant first (descending), ``lerf`` least relevant first (ascending), equal values
    ordered by ``ties``. ``heatmap`` [B,H,W] must be finite; ``ids`` are the samples'
    dataset positions (seed the ``random`` rule; default 0..B-1)."""
    check_choice("order", order, ["morf", "lerf"])
    check_choice("ties", ties, TIES)
    flat = heatmap.flatten(1).float()
    if ties == "rise":
        # numpy on the map's own float32 values, one argsort per row as RISE's batched
        # evaluate() does (row-wise argsort of [N, HW]).
        sal = (flat if order == "morf" else -flat).cpu().numpy()
        perm = np.flip(np.argsort(sal, axis=1), axis=-1)
        return torch.from_numpy(perm.copy()).to(flat.device)
    # Ascending sort key; + 0.0 turns -0.0 into 0.0 (a radix sort on CUDA compares bits).
    key = (-flat if order == "morf" else flat) + 0.0
    if ties == "stable":
        return torch.sort(key, dim=1, stable=True).indices
    ids = list(range(flat.shape[0])) if ids is None else ids
    # A random permutation per sample, then a stable sort of the values taken in that
    # permutation's order: tied pixels keep the permutation's (uniformly random) order.
    cpu = torch.device("cpu")
    shuffle = torch.stack([torch.randperm(flat.shape[1], generator=generator(seed, i, cpu, TIE_STREAM))
                           for i in ids]).to(flat.device)
    within = torch.sort(key.gather(1, shuffle), dim=1, stable=True).indices
    return shuffle.gather(1, within)


def ranks(heatmap: Tensor, order: Literal["morf", "lerf"], ties: Ties = "random",
          seed: int | None = None, ids: list[int] | None = None) -> Tensor:
    """Position of each pixel in the perturbation order (the inverse of ``order_of``),
    [B,H*W] int64."""
    perm = order_of(heatmap, order, ties, seed, ids)
    pos = torch.arange(perm.shape[1], device=perm.device).expand_as(perm)
    return torch.empty_like(perm).scatter_(1, perm, pos)
