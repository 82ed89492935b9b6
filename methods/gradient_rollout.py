"""Gradient-weighted attention rollout (Chefer, Gur & Wolf, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._attention import (Upsample, capture, check_block, check_model,
                                           class_token_index, to_input)
from faithbench.methods._common import check_inputs


@register(cost="backward", models="vit", check_model=check_model)
def gradient_rollout(model: nn.Module, x: Tensor, target: Tensor, start_layer: int = 0,
                     upsample: Upsample = "bilinear") -> Tensor:
    """Relevance of each patch to the class token: R = I, then for every block
    Ā = E_h[(∇A ⊙ A)^+] (Eq. 5, ∇A the gradient of the target's logit w.r.t. the block's
    attention probabilities) and R ← R + Ā R (Eq. 6); the class token's row of R over the
    patch tokens. One forward and one backward for the batch.

    Args:
        model: a ViT-style transformer (``faithbench.methods._attention``) returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        start_layer: the first block whose relevance is propagated (negative counts from
            the end; 0: every block, as the paper).
        upsample: interpolation of the patch grid to the input ("bilinear", as the
            authors' code; "bicubic", "nearest").

    Returns:
        [B,H,W] float32, R[cls, patches] (its self-relevance of 1 left out, as the paper).
    """
    target = check_inputs(x, target)
    c = capture(model, x, grad=True)
    cls = class_token_index(c.vit)
    start = check_block(start_layer, len(c.attn), "start_layer")
    score = c.logits.gather(1, target[:, None]).sum()
    grads = torch.autograd.grad(score, c.attn[start:], allow_unused=True)
    n = c.attn[0].shape[-1]
    r = torch.eye(n, device=x.device).expand(x.shape[0], n, n)
    for a, g in zip(c.attn[start:], grads):
        if g is None:  # a block the target's logit does not depend on adds nothing
            continue
        cam = (g * a).detach().float().clamp(min=0).mean(1)
        r = r + cam @ r
    return to_input(r[:, cls, c.prefix:], c, tuple(x.shape[-2:]), upsample)
