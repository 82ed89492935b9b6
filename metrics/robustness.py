"""Robustness of maps to input noise: stability under Gaussian noise (as in the
robustness analyses of Alvarez-Melis & Jaakkola 2018 and Adebayo et al. 2018),
Max-Sensitivity (Yeh et al., NeurIPS 2019) as Captum's ``sensitivity_max`` computes it,
and Avg-Sensitivity (Yeh et al.) on the same draws."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import (Explain, clean, nan_where,
                                        need_explain, per_sample_noise, sample_ids)
from faithbench.metrics._stability import Transform, ball_noise, stability
from faithbench.params import Count, Fraction, NonEmpty, Positive
from faithbench.types import Batch

NOISE_STREAM, SENSITIVITY_STREAM = 100, 200  # distinct noise streams per metric


_NOISE_AXIS = "noise level (std / image range)"


@register(higher_is_better=True, context=("explain", "seed"),
          outputs={"noise_stability_ssim": True, "noise_stability_topk_iou": True},
          curve_axes={f"noise_stability{k}_curve": _NOISE_AXIS for k in ("", "_ssim", "_topk_iou")})
def noise_stability(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                    batch: Batch | None = None, explain: Explain | None = None,
                    sigmas: Annotated[Sequence[float], NonEmpty()] = (0.05, 0.1, 0.2),
                    topk: Fraction = 0.1, absolute: bool = False,
                    seed: int | None = None, chunk: Count = 128) -> dict[str, Tensor]:
    """Similarity of the map of ``x`` and of ``x + noise``, noise ~ N(0, (sigma * range)^2)
    per pixel with ``range = max(x_i) - min(x_i)`` of each image (SmoothGrad's relative
    noise level, independent of the model's normalisation), at each sigma; only where
    the model's top-1 class is unchanged (NaN elsewhere). Spearman rank correlation
    (the score), SSIM and the IoU of the top ``topk`` pixels; see _similarity for
    constant maps.

    Args:
        explain: ``explain(x, target) -> [B,H,W]``, the method being evaluated.
        sigmas: noise levels relative to each image's range. absolute: compare |maps|.
        seed: noise seed (per sample, see _common). chunk: images per forward.
    Returns:
        ``noise_stability`` [B] mean Spearman over sigmas; ``noise_stability_ssim``,
        ``noise_stability_topk_iou``, ``noise_stability_unchanged`` [B]; curves
        ``noise_stability_curve`` (Spearman), ``_ssim_curve``, ``_topk_iou_curve`` [B,S]
        and their ``_x`` (the sigmas).
        Costs S explanations and S+1 forwards per sample.
    """
    explain = need_explain(explain, "noise_stability")
    ids = sample_ids(batch, x.shape[0])
    span = (x.flatten(1).max(1).values - x.flatten(1).min(1).values).view(-1, 1, 1, 1)

    def noisy(j: int, sigma: float) -> Transform:
        def make(z: Tensor, h: Tensor) -> tuple[Tensor, Tensor, None]:
            eps = per_sample_noise(tuple(z.shape[1:]), seed, ids, z.device, stream=NOISE_STREAM + j)
            return z + sigma * span * eps.to(z.dtype), h, None
        return make

    transforms = [noisy(j, float(s)) for j, s in enumerate(sigmas)]
    return stability("noise_stability", model, x, heatmap, target, explain, transforms,
                     topk, absolute, chunk, levels=[float(v) for v in sigmas])


def sensitivities(x: Tensor, heatmap: Tensor, target: Tensor, explain: Explain,
                  ids: list[int], radius: float, n_samples: int,
                  seed: int | None) -> tuple[Tensor, Tensor]:
    """``||e(x + d_j) - e(x)||_F / ||e(x)||_F`` [B,n_samples] for ``d_j`` uniform in the
    L-inf ball of ``radius`` (draw j from stream 200 + j, see ``ball_noise``), a map with
    zero norm divided by 1 (Captum's rule); and the [B] finite-map rows."""
    h, ok = clean(heatmap)
    norm = h.flatten(1).norm(dim=1)
    norm = torch.where(norm == 0, torch.ones_like(norm), norm)
    sens = []
    for j in range(n_samples):
        d = ball_noise(x, seed, ids, radius, SENSITIVITY_STREAM + j)
        hj = explain(x + d, target).detach().float()
        sens.append((hj - h).flatten(1).norm(dim=1) / norm)
    return torch.stack(sens, 1), ok


@register(higher_is_better=False, context=("explain", "seed"), outputs={"max_sensitivity_mean": False})
def max_sensitivity(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                    batch: Batch | None = None, explain: Explain | None = None,
                    radius: Positive = 0.02, n_samples: Count = 10,
                    seed: int | None = None) -> dict[str, Tensor]:
    """Max-Sensitivity (Yeh et al. 2019) as Captum's ``sensitivity_max``:
    ``max_j ||e(x + d_j) - e(x)||_F / ||e(x)||_F`` with ``d_j`` uniform in the L-inf ball
    of ``radius`` (model-input units, Captum's default 0.02), ``n_samples`` draws; a map
    with zero norm is divided by 1 (Captum's rule). ``e(x)`` is the given heatmap.

    Args:
        explain: ``explain(x, target) -> [B,H,W]``. seed: noise seed (per sample).
    Returns:
        ``max_sensitivity`` [B]; ``max_sensitivity_mean`` [B] the average over the draws
        (Yeh et al.'s average sensitivity with the same normalisation).
        Costs n_samples explanations per sample.
    """
    explain = need_explain(explain, "max_sensitivity")
    s, ok = sensitivities(x, heatmap, target, explain, sample_ids(batch, x.shape[0]),
                          radius, n_samples, seed)
    return {"max_sensitivity": nan_where(s.max(1).values, ok),
            "max_sensitivity_mean": nan_where(s.mean(1), ok)}


@register(higher_is_better=False, context=("explain", "seed"))
def avg_sensitivity(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                    batch: Batch | None = None, explain: Explain | None = None,
                    radius: Positive = 0.02, n_samples: Count = 10,
                    seed: int | None = None) -> dict[str, Tensor]:
    """Avg-Sensitivity (Yeh et al. 2019):
    ``mean_j ||e(x + d_j) - e(x)||_F / ||e(x)||_F`` over ``n_samples`` draws ``d_j``
    uniform in the L-inf ball of ``radius`` (model-input units), the same draws as
    ``max_sensitivity`` under the same seed; a map with zero norm is divided by 1.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        explain: ``explain(x, target) -> [B,H,W]``, the method being evaluated.
        radius: half-width of the uniform noise (Quantus's ``lower_bound``, 0.2 there).
        n_samples: draws per sample (Quantus's ``nr_samples``, 200 there).
        seed: noise seed (per sample).
    Returns:
        ``avg_sensitivity`` [B]. Costs n_samples explanations per sample.

    Example:
        >>> import torch
        >>> x = torch.randn(2, 3, 4, 5)
        >>> out = avg_sensitivity(None, x, x[:, 0], torch.tensor([0, 1]),
        ...                       explain=lambda z, t: z[:, 0], seed=0)
        >>> bool((out["avg_sensitivity"] > 0).all())
        True
    """
    explain = need_explain(explain, "avg_sensitivity")
    s, ok = sensitivities(x, heatmap, target, explain, sample_ids(batch, x.shape[0]),
                          radius, n_samples, seed)
    return {"avg_sensitivity": nan_where(s.mean(1), ok)}
