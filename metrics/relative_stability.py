"""Relative Input and Output Stability (Agarwal, Johnson, Saxena, Lakkaraju & Zitnik,
"Rethinking Stability for Attribution-based Explanations", 2022): the relative change of
the map over the relative change of the input (RIS) or of the logits (ROS), maximised
over neighbours that keep the model's prediction."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import (Explain, clean, nan_where, need_explain,
                                        predictions, sample_ids)
from faithbench.metrics._stability import ball_noise
from faithbench.params import Count, Positive
from faithbench.types import Batch

RELATIVE_STREAM = 950  # per-sample generator streams of the neighbours (950 + draw)


def relative_change(a: Tensor, b: Tensor, eps_min: float) -> Tensor:
    """``||(a - b) / a||_2`` [B] over all but the first axis, a zero entry of ``a``
    divided by ``eps_min`` (the paper's guard, as Quantus applies it)."""
    den = torch.where(a == 0, torch.full((), eps_min, device=a.device, dtype=a.dtype), a)
    return ((a - b) / den).flatten(1).norm(dim=1)


def relative_stability(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                       batch: Batch | None, explain: Explain, radius: float, n_samples: int,
                       eps_min: float, chunk: int, seed: int | None) -> dict[str, Tensor]:
    """RIS and ROS [B] on the same neighbours ``x_j = x + d_j``, ``d_j`` uniform in the
    L-inf ball of ``radius``; each the max over the neighbours whose top-1 class equals
    that of ``x`` (NaN where none does); ``unchanged`` [B] the share that do."""
    h, ok = clean(heatmap)
    ids = sample_ids(batch, x.shape[0])
    xf = x.float()
    logits = predictions(model, x, chunk)
    ris, ros, keep = [], [], []
    for j in range(n_samples):
        xj = x + ball_noise(x, seed, ids, radius, RELATIVE_STREAM + j)
        lj = predictions(model, xj, chunk)
        hj = explain(xj, target).detach().float()
        num = relative_change(h, hj, eps_min)
        ris.append(num / relative_change(xf, xj.float(), eps_min).clamp_min(eps_min))
        ros.append(num / (logits - lj).norm(dim=1).clamp_min(eps_min))
        keep.append(lj.argmax(1) == logits.argmax(1))
    same = torch.stack(keep, 1)
    ninf = torch.full((), -float("inf"), device=x.device)

    def best(v: list[Tensor]) -> Tensor:
        m = torch.where(same, torch.stack(v, 1), ninf).max(1).values
        return nan_where(m, ok & same.any(1))

    return {"ris": best(ris), "ros": best(ros), "unchanged": nan_where(same.float().mean(1), ok)}


@register(higher_is_better=False, context=("explain", "seed"),
          outputs={"relative_input_stability_unchanged": True})
def relative_input_stability(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                             batch: Batch | None = None, explain: Explain | None = None,
                             radius: Positive = 0.02, n_samples: Count = 10,
                             eps_min: Positive = 1e-6, chunk: Count = 128,
                             seed: int | None = None) -> dict[str, Tensor]:
    """Relative Input Stability (Agarwal et al. 2022):
    ``max_j ||(e - e_j) / e||_2 / max(||(x - x_j) / x||_2, eps_min)`` over the neighbours
    ``x_j = x + d_j`` (``d_j`` uniform in the L-inf ball of ``radius``) that keep the
    model's top-1 class; divisions are element-wise, a zero entry divided by ``eps_min``.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        explain: ``explain(x, target) -> [B,H,W]``, the method being evaluated.
        radius: half-width of the uniform noise, model-input units. n_samples: neighbours
            per sample (Quantus's ``nr_samples`` 200). eps_min: the paper's guard (1e-6).
        chunk: images per forward. seed: noise seed (per sample, stream 950 + draw).
    Returns:
        ``relative_input_stability`` [B] (NaN if every neighbour changes the
        prediction); ``relative_input_stability_unchanged`` [B] the share that keep it.
        Costs n_samples explanations and n_samples + 1 forwards per sample.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(60, 3))
        >>> x = torch.randn(2, 3, 4, 5)
        >>> out = relative_input_stability(m, x, x[:, 0], torch.tensor([0, 1]),
        ...                                explain=lambda z, t: z[:, 0], seed=0)
        >>> out["relative_input_stability"].shape
        torch.Size([2])
    """
    explain = need_explain(explain, "relative_input_stability")
    out = relative_stability(model, x, heatmap, target, batch, explain, radius, n_samples,
                             eps_min, chunk, seed)
    return {"relative_input_stability": out["ris"],
            "relative_input_stability_unchanged": out["unchanged"]}


@register(higher_is_better=False, context=("explain", "seed"),
          outputs={"relative_output_stability_unchanged": True})
def relative_output_stability(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                              batch: Batch | None = None, explain: Explain | None = None,
                              radius: Positive = 0.02, n_samples: Count = 10,
                              eps_min: Positive = 1e-6, chunk: Count = 128,
                              seed: int | None = None) -> dict[str, Tensor]:
    """Relative Output Stability (Agarwal et al. 2022):
    ``max_j ||(e - e_j) / e||_2 / max(||h(x) - h(x_j)||_2, eps_min)``, ``h`` the model's
    logits (all classes), over the neighbours of ``relative_input_stability`` (the same
    draws under the same seed) that keep the model's top-1 class.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        explain: ``explain(x, target) -> [B,H,W]``, the method being evaluated.
        radius: half-width of the uniform noise, model-input units. n_samples: neighbours
            per sample. eps_min: the paper's guard (1e-6). chunk: images per forward.
        seed: noise seed (per sample).
    Returns:
        ``relative_output_stability`` [B] (NaN if every neighbour changes the
        prediction); ``relative_output_stability_unchanged`` [B].
        Costs n_samples explanations and n_samples + 1 forwards per sample.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(60, 3))
        >>> x = torch.randn(2, 3, 4, 5)
        >>> out = relative_output_stability(m, x, x[:, 0], torch.tensor([0, 1]),
        ...                                 explain=lambda z, t: z[:, 0], seed=0)
        >>> out["relative_output_stability"].shape
        torch.Size([2])
    """
    explain = need_explain(explain, "relative_output_stability")
    out = relative_stability(model, x, heatmap, target, batch, explain, radius, n_samples,
                             eps_min, chunk, seed)
    return {"relative_output_stability": out["ros"],
            "relative_output_stability_unchanged": out["unchanged"]}
