"""Extremal perturbation (Fong, Patrick & Vedaldi, "Understanding Deep Networks via
Extremal Perturbations and Smooth Masks", ICCV 2019), as TorchRay's
``extremal_perturbation`` with its pointing-benchmark settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._common import check_chunk, check_inputs
from faithbench.methods._extremal import SmoothMask, area_reference, perturb, pyramid
from faithbench.ops import gaussian_blur
from faithbench.params import Count, NonEmpty, NonNegative, Positive, Range

Variant = Literal["preserve", "delete", "dual"]
Perturbation = Literal["blur", "fade"]
Reward = Literal["simple", "contrastive"]
Area = Annotated[float, Range(0, 1, lo_open=True, hi_open=True)]  # a share of the image
LR, MOMENTUM, REGUL, REGUL_GROWTH = 0.01, 0.9, 300.0, 1.0035  # TorchRay's constants


def _reward(logits: Tensor, target: Tensor, kind: str) -> Tensor:
    """The target's logit, or (contrastive) its margin over the best other class (the
    others floored at -100, as TorchRay's ``contrastive_reward``) -> [N]."""
    own = logits.gather(1, target[:, None])[:, 0]
    if kind == "simple":
        return own
    others = logits.scatter(1, target[:, None], -100.0)
    return own - others.amax(1)


def optimise_masks(model: nn.Module, pyr: Tensor, target: Tensor, areas: Tensor, gen: SmoothMask,
                   max_iter: int, variant: str, reward: str, jitter: bool) -> Tensor:
    """Optimise one mask per row: pyr [N,L,C,H,W], target [N], areas [N] -> [N,1,H,W].

    Maximises reward - lambda mean((sort(m) - r_a)^2) (the area constraint as the
    paper's ranking regulariser, Sec. 3.2; lambda = 300 growing by 1.0035 per step) by SGD (lr 0.01, momentum and dampening
    0.9) on the mask parameters, clamped to [0, 1] after each step; every even step
    sees the image flipped left-right (``jitter``). Rows are independent, so the
    gradient reaches only the mask parameters, never the model's. Returns the masks the
    last step evaluated (before its update), as TorchRay.
    """
    n = len(target)
    params = torch.ones(n, 1, *gen.shape_in, device=pyr.device)
    opt = torch.optim.SGD([params], lr=LR, momentum=MOMENTUM, dampening=MOMENTUM)
    reference, weight = area_reference(areas, gen.weight[0, 0].numel()), REGUL
    for t in range(max_iter):
        with torch.enable_grad():
            p = params.detach().requires_grad_(True)
            mask, full = gen(p)
            keep = {"preserve": [mask], "delete": [1 - mask], "dual": [mask, 1 - mask]}[variant]
            x = torch.cat([perturb(pyr, m) for m in keep])
            if jitter and t % 2 == 0:
                x = x.flip(3)
            r = _reward(model(x), target.repeat(len(keep)), reward)
            r = r[:n] - r[n:] if variant == "dual" else (-r if variant == "delete" else r)
            regul = -((full.flatten(1).sort(1).values - reference) ** 2).mean(1) * weight
            (params.grad,) = torch.autograd.grad(-(r + regul).sum(), p)
        opt.step()
        with torch.no_grad():
            params.clamp_(0, 1)
        weight *= REGUL_GROWTH
    return mask.detach()


@register(cost="perturbation")
def extremal_perturbation(model: nn.Module, x: Tensor, target: Tensor,
                          areas: Annotated[Sequence[Area], NonEmpty()] = (0.025, 0.05, 0.1, 0.2),
                          variant: Variant = "preserve", perturbation: Perturbation = "blur",
                          reward: Reward = "simple", max_iter: Count = 800,
                          num_levels: Annotated[int, Range(2)] = 8, max_blur: Positive = 20.0,
                          step: Count = 7, sigma: Positive = 21.0, jitter: bool = True,
                          smooth: NonNegative = 0.09, chunk: Count = 16) -> Tensor:
    """The sum over ``areas`` of the smooth masks of fixed area that best preserve
    ("preserve"; "delete": destroy; "dual": both) the target's logit when the rest of the
    image is blurred (Sec. 3 of the paper), as TorchRay's pointing benchmark computes
    its map (``mask.sum(dim=0)``). Deterministic: TorchRay's jitter flips every even step.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        areas: mask areas as fractions of the image (TorchRay's VOC benchmark; its COCO
            benchmark uses 0.018, 0.025, 0.05, 0.1).
        variant: the game played.
        perturbation: "blur" (Gaussian, up to ``max_blur`` px) or "fade" (towards 0).
        reward: "simple" (the target logit) or "contrastive" (its margin over the best
            other class).
        max_iter: optimisation steps.
        num_levels: levels of the perturbation pyramid.
        max_blur: sigma of the most blurred level, in input pixels.
        step: mask parameter grid step, in input pixels.
        sigma: mask smoothness, in input pixels (TorchRay's benchmark: 21).
        jitter: flip the image at every even step.
        smooth: Gaussian smoothing of the summed mask, sigma = smooth * min(H, W), zero
            padding (TorchRay smooths the masks after resizing them to the original
            image, with the same fraction of its shorter side); 0 turns it off.
        chunk: masks (sample x area) optimised together.

    Returns:
        [B,H,W] float32 in [0, len(areas)].
    """
    target = check_inputs(x, target)
    b, h, w = x.shape[0], *x.shape[-2:]
    gen = SmoothMask((h, w), step, sigma, x.device)
    pyr = pyramid(x.detach().float(), num_levels, max_blur, perturbation)
    rows = torch.arange(b * len(areas), device=x.device)
    sample, area = rows // len(areas), torch.tensor(list(areas), dtype=torch.float64, device=x.device)[rows % len(areas)]
    masks = torch.cat([
        optimise_masks(model, pyr[sample[i]], target[sample[i]], area[i], gen, max_iter,
                       variant, reward, jitter)
        for i in rows.split(check_chunk(chunk))
    ])
    total = masks.reshape(b, len(areas), h, w).sum(1, keepdim=True)
    return gaussian_blur(total, smooth * min(h, w), truncate=4.0, padding="zeros")[:, 0].float()
