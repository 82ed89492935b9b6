"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers",
ACL 2020, Sec. 3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._attention import (HeadFusion, Upsample, capture, check_block,
                                           check_model, class_token_index, fuse_heads, to_input)
from faithbench.methods._common import check_inputs
from faithbench.params import UnitInterval


def discard_lowest(a: Tensor, ratio: float, keep: int) -> Tensor:
    """[B,N,N] with the lowest ``ratio`` of each matrix's entries set to 0, entry
    (keep, keep) spared (the class token's attention to itself), as the common
    implementations of rollout do (e.g. jacobgil/vit-explain); not in the paper."""
    flat = a.flatten(1).clone()
    k = int(flat.shape[1] * ratio)
    if k == 0:
        return a
    low = flat.topk(k, dim=1, largest=False).indices
    spare = keep * a.shape[-1] + keep
    flat.scatter_(1, low, torch.where(low == spare, flat.gather(1, low), 0.0))
    return flat.view_as(a)


@register(cost="forward", models="vit", check_model=check_model)
def attention_rollout(model: nn.Module, x: Tensor, target: Tensor, head_fusion: HeadFusion = "mean",
                      discard_ratio: UnitInterval = 0.0, start_layer: int = 0,
                      upsample: Upsample = "bilinear") -> Tensor:
    """Attention rollout: per block A' = 0.5 A + 0.5 I with A the head-fused attention
    (the residual connection as identity), rows renormalised; the product
    A'_L ... A'_start (Eq. in Sec. 3: rollout(l_i) = A'(l_i) rollout(l_(i-1))); the class
    token's row over the patch tokens. Not class-specific: ``target`` is checked, not used.

    Args:
        model: a ViT-style transformer (``faithbench.methods._attention``) returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        head_fusion: "mean" over heads (the paper), "max" or "min".
        discard_ratio: share of each block's lowest fused attention entries set to 0 before
            the identity is added (0: the paper).
        start_layer: the first block rolled out (negative counts from the end).
        upsample: interpolation of the patch grid to the input ("bilinear", as the
            reference codes; "bicubic", "nearest").

    Returns:
        [B,H,W] float32, the rolled-out attention of the class token to each patch.

    Example:
        >>> import torch
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> vit = VisionTransformer(img_size=(32, 48), patch_size=8, embed_dim=16, depth=2,
        ...                         num_heads=2, num_classes=3).eval()
        >>> attention_rollout(vit, torch.randn(2, 3, 32, 48), torch.tensor([0, 2])).shape
        torch.Size([2, 32, 48])
    """
    check_inputs(x, target)
    c = capture(model, x, grad=False, keep=lambda a: fuse_heads(a, head_fusion))
    cls = class_token_index(c.vit)
    start = check_block(start_layer, len(c.attn), "start_layer")
    eye = torch.eye(c.attn[0].shape[-1], device=x.device)
    rollout = None
    for a in c.attn[start:]:
        a = discard_lowest(a.float(), float(discard_ratio), cls)
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return to_input(rollout[:, cls, c.prefix:], c, tuple(x.shape[-2:]), upsample)
