"""Infidelity (Yeh, Hsieh, Suggala, Inouye & Ravikumar, NeurIPS 2019): how far the map's
prediction of a perturbation's effect, ``I . e``, is from the model's actual change of
score, ``f(x) - f(x - I)``, in expectation over random perturbations ``I``."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.errors import check_choice
from faithbench.metrics import register
from faithbench.metrics._common import clean, forward_chunks, nan_where, sample_ids
from faithbench.ops import Activation, class_scores, generator
from faithbench.params import Count, Positive
from faithbench.types import Batch

Perturbation = Literal["noisy_baseline", "gaussian", "square"]
PERTURBATIONS = ("noisy_baseline", "gaussian", "square")
INFIDELITY_STREAM = 500  # per-sample generator streams of the perturbations (500 + draw)


def perturbations(x: Tensor, kind: str, sigma: float, patch: int, n: int,
                  seed: int | None, ids: list[int]) -> Tensor:
    """The perturbations ``I`` [B,n,C,H,W] in the model's input units, draw ``j`` of
    sample ``i`` from ``generator(seed, ids[i], stream=500 + j)``:

    - ``noisy_baseline``: ``I = x - sigma * eps``, the image replaced by noise around the
      zero baseline (the paper's code's "Gaussian" perturbation, without its clip to
      the [0, 1] pixel range);
    - ``gaussian``: ``I = sigma * eps`` (Captum's example perturbation);
    - ``square``: ``I = x * S``, S a ``patch`` x ``patch`` square at a uniform position
      inside the image (the paper's square removal to the zero baseline).
    """
    check_choice("perturbation", kind, PERTURBATIONS)
    b, c, h, w = x.shape
    out = x.new_empty((b, n, c, h, w))
    for i, sid in enumerate(ids):
        for j in range(n):
            g = generator(seed, sid, x.device, INFIDELITY_STREAM + j)
            if kind == "square":
                p = min(patch, h, w)
                top = int(torch.randint(0, h - p + 1, (1,), generator=g, device=x.device))
                left = int(torch.randint(0, w - p + 1, (1,), generator=g, device=x.device))
                out[i, j] = 0
                out[i, j, :, top:top + p, left:left + p] = x[i, :, top:top + p, left:left + p]
                continue
            eps = torch.randn((c, h, w), generator=g, device=x.device).to(x.dtype)
            out[i, j] = sigma * eps if kind == "gaussian" else x[i] - sigma * eps
    return out


@register(higher_is_better=False, context=("seed", "activation"))
def infidelity(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
               batch: Batch | None = None, perturbation: Perturbation = "noisy_baseline",
               sigma: Positive = 0.2, patch: Count = 4, n_samples: Count = 10,
               normalize: bool = True, activation: Activation | None = "logit",
               chunk: Count = 128, seed: int | None = None) -> dict[str, Tensor]:
    """Infidelity (Yeh et al. 2019, Eq. 2):
    ``mean_j (beta * I_j . e - (f(x) - f(x - I_j)))^2`` over ``n_samples`` perturbations
    ``I_j`` (see ``perturbations``), ``e`` the map broadcast over the channels, ``f`` the
    target's ``activation`` score. With ``normalize`` (the paper's code), ``beta`` is the
    least-squares scale ``sum(I.e * diff) / sum((I.e)^2)`` (0 when every ``I.e`` is 0), so
    the score does not depend on the map's scale; without it ``beta = 1`` (Captum's
    default). Lower is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        perturbation: ``noisy_baseline`` (default, the paper's "Gaussian"), ``gaussian``,
            ``square``. sigma: noise std in model-input units (the paper's 0.2).
        patch: side of the ``square`` perturbation in pixels.
        n_samples: perturbations per sample (Captum's default 10; the paper's code drew
            10,000 per MNIST image).
        normalize: optimal scaling of the map, as the paper's code and Captum's
            ``normalize=True``. activation: ``logit`` (default, the model's output as
            the paper's code and Captum use it), ``softmax``, ``sigmoid``, or null
            for the model's own (filled by the runner).
        chunk: perturbed images per forward. seed: perturbations (per sample).
    Returns:
        ``infidelity`` [B]; ``infidelity_beta`` [B] the scale applied to the map.
        Costs n_samples + 1 forwards per sample.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> out = infidelity(m, torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4), torch.tensor([0, 1]))
        >>> out["infidelity"].shape
        torch.Size([2])
    """
    h, ok = clean(heatmap)
    b, n = x.shape[0], n_samples
    pert = perturbations(x, perturbation, sigma, patch, n, seed, sample_ids(batch, b))
    flat = pert.view(b * n, *x.shape[1:])
    tgt = target.to(x.device).long()
    clean_scores = class_scores(forward_chunks(model, b, lambda r: x[r.to(x.device)], chunk),
                                tgt, activation, via_log_softmax=True)
    rows = torch.arange(b * n, device=x.device)
    # Perturbed images x - I, built per chunk (rows of sample i are i*n .. i*n + n-1).
    logits = forward_chunks(model, b * n, lambda r: x[r.to(x.device) // n] - flat[r.to(x.device)],
                            chunk)
    diff = clean_scores[:, None] - class_scores(logits, tgt[rows // n], activation,
                                                via_log_softmax=True).view(b, n)
    explained = (pert.sum(2) * h[:, None]).flatten(2).sum(2)  # I . e, channels summed: [B,n]
    if normalize:
        den = explained.pow(2).sum(1)
        beta = torch.where(den > 0, (explained * diff).sum(1) / den.clamp_min(1e-30),
                           torch.zeros_like(den))
    else:
        beta = torch.ones(b, device=x.device)
    infid = (beta[:, None] * explained - diff).pow(2).mean(1)
    return {"infidelity": nan_where(infid, ok), "infidelity_beta": nan_where(beta, ok)}
