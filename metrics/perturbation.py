"""Perturbation curves: deletion and insertion (Petsiuk et al., RISE, BMVC 2018) and
the area between the least- and most-relevant-first curves (ABPC: Samek et al. 2017's
MoRF/LeRF orders, Schulz et al. 2020's area between them)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.metrics import register
from faithbench.metrics._common import Activation, sample_ids
from faithbench.metrics._order import Ties
from faithbench.metrics._perturb import Substitute, curve_x, curves
from faithbench.params import Count, Fraction, OddSize, Positive
from faithbench.types import Batch

RISE_STEP = 1 / 28  # 224*8 pixels per step at 224x224


PERTURBED_AXIS = "fraction of the perturbation"  # x of the curves: share of pixels perturbed


@register(higher_is_better=False, context=("seed", "activation"),
          curve_axes={"deletion_curve": PERTURBED_AXIS})
def deletion(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
             batch: Batch | None = None, step: Fraction = RISE_STEP,
             substitute: Substitute = "zero", activation: Activation | None = None,
             chunk: Count = 128, seed: int | None = None, blur_kernel: OddSize = 11,
             blur_sigma: Positive = 5.0, ties: Ties = "random") -> dict[str, Tensor]:
    """Deletion AUC (RISE): remove pixels most-salient first, replacing them with
    ``substitute`` (RISE: ``zero``, 0 in normalised space = the dataset mean colour),
    ``step`` of the pixels at a time, and integrate the target's class score
    (softmax, or sigmoid for multi-label) over the fraction removed. Lower is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] raw map; target: [B] int64.
        step: fraction of pixels per step (default 1/28: RISE's 28 steps, 29 points).
        chunk: perturbed images per forward. seed: for ``substitute="noise"`` and
            ``ties="random"`` (per sample, with the sample's dataset position).
        ties: order of pixels of equal saliency: ``random`` (seeded, unbiased; the
            default), ``rise`` (RISE's ``np.flip(np.argsort(sal))``, computed by numpy),
            ``stable`` (raster order). See ``faithbench.metrics._order``.
    Returns:
        ``deletion`` [B] AUC in [0,1]; ``deletion_curve`` [B,T] scores at each step;
        ``deletion_curve_x`` [B,T] the fraction of pixels removed at each point.
        Costs T = ceil(1/step)+1 forwards per sample.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> out = deletion(m, torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4), torch.tensor([0, 1]))
        >>> out["deletion"].shape, out["deletion_curve"].shape
        (torch.Size([2]), torch.Size([2, 17]))
    """
    auc, curve = curves(model, x, heatmap, target, mode="deletion", order="morf",
                        step=step, substitute=substitute, activation=activation,
                        chunk=chunk, seed=seed, ids=sample_ids(batch, x.shape[0]),
                        blur_kernel=blur_kernel, blur_sigma=blur_sigma, ties=ties)
    return {"deletion": auc, "deletion_curve": curve, "deletion_curve_x": curve_x(x, step)}


@register(higher_is_better=True, context=("seed", "activation"),
          curve_axes={"insertion_curve": PERTURBED_AXIS})
def insertion(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
              batch: Batch | None = None, step: Fraction = RISE_STEP,
              substitute: Substitute = "blur", activation: Activation | None = None,
              chunk: Count = 128, seed: int | None = None, blur_kernel: OddSize = 11,
              blur_sigma: Positive = 5.0, ties: Ties = "random") -> dict[str, Tensor]:
    """Insertion AUC (RISE): start from ``substitute`` (RISE: ``blur``, Gaussian kernel
    11, sigma 5, zero padding, in normalised space) and restore the original pixels
    most-salient first, ``step`` of the pixels at a time; integrate the target's class
    score over the fraction restored. Higher is better.

    Args: as ``deletion``.
    Returns:
        ``insertion`` [B] AUC in [0,1]; ``insertion_curve`` [B,T] and its
        ``insertion_curve_x`` [B,T] (fraction of pixels inserted).
        Costs T = ceil(1/step)+1 forwards per sample.
    """
    auc, curve = curves(model, x, heatmap, target, mode="insertion", order="morf",
                        step=step, substitute=substitute, activation=activation,
                        chunk=chunk, seed=seed, ids=sample_ids(batch, x.shape[0]),
                        blur_kernel=blur_kernel, blur_sigma=blur_sigma, ties=ties)
    return {"insertion": auc, "insertion_curve": curve, "insertion_curve_x": curve_x(x, step)}


@register(higher_is_better=True, context=("seed", "activation"),
          outputs={"abpc_morf": False, "abpc_lerf": True},
          curve_axes={"abpc_morf_curve": PERTURBED_AXIS, "abpc_lerf_curve": PERTURBED_AXIS})
def abpc(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
         batch: Batch | None = None, step: Fraction = RISE_STEP,
         substitute: Substitute = "zero", activation: Activation | None = None,
         chunk: Count = 128, seed: int | None = None, blur_kernel: OddSize = 11,
         blur_sigma: Positive = 5.0, ties: Ties = "random") -> dict[str, Tensor]:
    """Area between perturbation curves: remove pixels most-relevant first (MoRF, the
    deletion curve) and least-relevant first (LeRF, Samek et al. 2017), and return
    ``AUC(LeRF) - AUC(MoRF)`` (Schulz et al. 2020), with the same substitute and steps.
    A faithful map drops the score fast under MoRF and slowly under LeRF. LeRF is MoRF of
    the negated map under the same ``ties`` rule: with ``random`` and ``stable`` tied
    pixels keep one order in both curves, so a constant map gives exactly 0. Higher is
    better.

    Args: as ``deletion``.
    Returns:
        ``abpc`` [B] in [-1,1]; ``abpc_morf``/``abpc_lerf`` [B] AUCs;
        ``abpc_morf_curve``/``abpc_lerf_curve`` [B,T] with their ``_x`` [B,T].
        Costs 2T forwards per sample.
    """
    kw = dict(mode="deletion", step=step, substitute=substitute, activation=activation,
              chunk=chunk, seed=seed, ids=sample_ids(batch, x.shape[0]),
              blur_kernel=blur_kernel, blur_sigma=blur_sigma, ties=ties)
    morf, morf_curve = curves(model, x, heatmap, target, order="morf", **kw)
    lerf, lerf_curve = curves(model, x, heatmap, target, order="lerf", **kw)
    return {"abpc": lerf - morf, "abpc_morf": morf, "abpc_lerf": lerf,
            "abpc_morf_curve": morf_curve, "abpc_lerf_curve": lerf_curve,
            "abpc_morf_curve_x": curve_x(x, step), "abpc_lerf_curve_x": curve_x(x, step)}
