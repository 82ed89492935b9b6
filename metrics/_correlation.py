"""Pearson correlation of per-sample rows, for the faithfulness metrics that correlate
a map's sums with the model's score changes (faithfulness correlation and estimate,
sensitivity-n, monotonicity correlation)."""

from __future__ import annotations

import torch
from torch import Tensor


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of the rows of ``a``, ``b`` [B,N], in float64; 0 where either
    row is constant (a map that predicts no difference between perturbations, or a
    model that shows none, has no linear relation). Returns [B] float32."""
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    den = (a.square().sum(1) * b.square().sum(1)).sqrt()
    return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den)).float()
