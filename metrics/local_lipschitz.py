"""Local Lipschitz estimate (Alvarez-Melis & Jaakkola, "On the robustness of
interpretability methods", 2018): the largest ratio of a map's change to the input's
change over random neighbours of the input."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import (Explain, clean, nan_where, need_explain,
                                        per_sample_noise, sample_ids)
from faithbench.params import Count, Positive
from faithbench.types import Batch

LIPSCHITZ_STREAM = 900  # per-sample generator streams of the neighbours (900 + draw)


@register(higher_is_better=False, context=("explain", "seed"), outputs={"local_lipschitz_mean": False})
def local_lipschitz(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                    batch: Batch | None = None, explain: Explain | None = None,
                    sigma: Positive = 0.1, n_samples: Count = 10,
                    seed: int | None = None) -> dict[str, Tensor]:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018):
    ``max_j ||e(x) - e(x_j)||_2 / ||x - x_j||_2`` over ``n_samples`` neighbours
    ``x_j = x + sigma * eps_j``, ``eps_j`` standard normal per input value (the sampled
    estimate Quantus's ``LocalLipschitzEstimate`` uses in place of the paper's
    optimisation). Norms are over all pixels (and channels for the input). The map is
    used as given, not normalised (Quantus normalises by the max by default).

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        explain: ``explain(x, target) -> [B,H,W]``, the method being evaluated.
        sigma: std of the neighbours' noise in model-input units (Quantus's
            ``perturb_std`` 0.1). n_samples: neighbours per sample (Quantus's 200).
        seed: noise seed (per sample, stream 900 + draw).
    Returns:
        ``local_lipschitz`` [B] the max ratio; ``local_lipschitz_mean`` [B] its mean
        over the neighbours. Costs n_samples explanations per sample.

    Example:
        >>> import torch
        >>> x = torch.randn(2, 3, 4, 5)
        >>> out = local_lipschitz(None, x, x[:, 0], torch.tensor([0, 1]),
        ...                       explain=lambda z, t: z[:, 0], seed=0)
        >>> bool(((out["local_lipschitz"] > 0) & (out["local_lipschitz"] <= 1)).all())
        True
    """
    explain = need_explain(explain, "local_lipschitz")
    h, ok = clean(heatmap)
    ids = sample_ids(batch, x.shape[0])
    ratios = []
    for j in range(n_samples):
        d = sigma * per_sample_noise(tuple(x.shape[1:]), seed, ids, x.device,
                                     stream=LIPSCHITZ_STREAM + j).to(x.dtype)
        hj = explain(x + d, target).detach().float()
        ratios.append((hj - h).flatten(1).norm(dim=1) / d.float().flatten(1).norm(dim=1))
    r = torch.stack(ratios, 1)
    return {"local_lipschitz": nan_where(r.max(1).values, ok),
            "local_lipschitz_mean": nan_where(r.mean(1), ok)}
