"""LeGrad (Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, "LeGrad: An Explainability
Method for Vision Transformers via Feature Formation Sensitivity", arXiv:2404.03214,
2024; ICCV 2025)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError, check_choice
from faithbench.methods import register
from faithbench.methods._attention import Capture, Upsample, capture, check_block, check_model, to_input
from faithbench.methods._common import check_inputs

Pool = Literal["mean", "model"]


def layer_scores(c: Capture, tokens: Tensor, pool: str) -> Tensor:
    """s^l: the class logits [B,K] the model's final norm and head give a block's tokens
    [B,N,D]; ``mean`` pools the tokens by their mean first (LN(mean), the authors' code),
    ``model`` with the model's own pooling (its class token for timm's ViT)."""
    check_choice("pool", pool, ("mean", "model"))
    vit = c.vit
    if not (hasattr(vit, "norm") and hasattr(vit, "forward_head")):
        raise ConfigError(f"legrad needs the final norm and forward_head of {type(vit).__name__} "
                          "(as timm's VisionTransformer) to score the blocks' tokens")
    if pool == "mean":
        # every token replaced by the mean token: whatever the head pools, it sees LN(mean)
        return vit.forward_head(vit.norm(tokens.mean(1, keepdim=True)).expand_as(tokens))
    return vit.forward_head(vit.norm(tokens))


@register(cost="backward", models="vit", check_model=check_model)
def legrad(model: nn.Module, x: Tensor, target: Tensor, start_layer: int = 0, pool: Pool = "mean",
           upsample: Upsample = "bilinear") -> Tensor:
    """LeGrad: for every block l, the target's logit s^l read from the block's output
    tokens by the final norm and head, and the positive part of its gradient w.r.t. the
    block's attention probabilities A^l, averaged over heads and query tokens (Sec. 3:
    Ê^l = mean_(h,i) ReLU(∂s^l/∂A^l)); the patch keys' columns, averaged over the blocks.
    One forward; each block's backward runs through that block only.

    Args:
        model: a ViT-style transformer (``faithbench.methods._attention``) returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        start_layer: the first block aggregated (negative counts from the end; 0: every
            block, as the paper; the authors' wrapper defaults to the last two, -2).
        pool: how s^l pools a block's tokens: "mean" of all tokens (the authors' code,
            torchcam) or "model" (the model's own pooling: its class token).
        upsample: interpolation of the patch grid to the input ("bilinear", as the
            authors' code; "bicubic", "nearest").

    Returns:
        [B,H,W] float32, the mean over blocks (not min-max normalised, unlike the paper's
        final step).

    Example:
        >>> import torch
        >>> from timm.models.deit import VisionTransformerDistilled
        >>> deit = VisionTransformerDistilled(img_size=32, patch_size=8, embed_dim=16, depth=2,
        ...                                   num_heads=2, num_classes=3).eval()
        >>> legrad(deit, torch.randn(2, 3, 32, 32), torch.tensor([0, 2])).shape
        torch.Size([2, 32, 32])
    """
    target = check_inputs(x, target)
    c = capture(model, x, grad=True, tokens=True)
    start = check_block(start_layer, len(c.attn), "start_layer")
    maps = []
    for a, z in zip(c.attn[start:], c.tokens[start:]):
        s = layer_scores(c, z, pool).gather(1, target[:, None]).sum()
        (g,) = torch.autograd.grad(s, a, retain_graph=True)
        maps.append(g.detach().float().clamp(min=0).mean((1, 2))[:, c.prefix:])
    return to_input(torch.stack(maps).mean(0), c, tuple(x.shape[-2:]), upsample)
