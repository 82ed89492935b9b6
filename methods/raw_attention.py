"""Raw attention: the class token's attention over the patch tokens in one block, the
baseline of Abnar & Zuidema ("Quantifying Attention Flow in Transformers", ACL 2020)
and of Chefer, Gur & Wolf (ICCV 2021)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._attention import (HeadFusion, Upsample, capture, check_block,
                                           check_model, class_token_index, fuse_heads, to_input)
from faithbench.methods._common import check_inputs


@register(cost="forward", models="vit", check_model=check_model)
def raw_attention(model: nn.Module, x: Tensor, target: Tensor, head_fusion: HeadFusion = "mean",
                  block: int = -1, upsample: Upsample = "bilinear") -> Tensor:
    """Attention probabilities from the class token to every patch token in ``block``,
    heads fused. Not class-specific: ``target`` is checked, not used.

    Args:
        model: a ViT-style transformer (``faithbench.methods._attention``) returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        head_fusion: "mean" over heads (the papers), "max" or "min".
        block: the block whose attention is read (-1: the last).
        upsample: interpolation of the patch grid to the input ("bilinear", as the
            reference codes; "bicubic", "nearest").

    Returns:
        [B,H,W] float32, each patch's attention weight (the prefix tokens' share left out).
    """
    check_inputs(x, target)
    c = capture(model, x, grad=False)
    cls = class_token_index(c.vit)
    a = fuse_heads(c.attn[check_block(block, len(c.attn), "block")], head_fusion)
    return to_input(a[:, cls, c.prefix:], c, tuple(x.shape[-2:]), upsample)
