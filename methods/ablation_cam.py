"""Ablation-CAM (Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep
Convolutional Network via Gradient-free Localization", WACV 2020)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import capture, combine, hook_output, resolve_layer, upsample
from faithbench.methods._common import check_inputs, chunk_pairs
from faithbench.params import Count


def layer_map(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None,
              chunk: int = 64) -> Tensor:
    """Ablation-CAM at the layer's resolution [B,h,w] (see ``ablation_cam``)."""
    target = check_inputs(x, target)
    c = capture(model, x, target, layer, grad=False)
    y = c.logits.gather(1, target[:, None])[:, 0].float()  # [B]
    n, k = c.acts.shape[:2]
    ablated = torch.zeros(n, k, device=x.device)
    channel = torch.zeros(0, dtype=torch.int64)

    def drop(out: Tensor) -> Tensor:
        out = out.clone()
        out[torch.arange(out.shape[0], device=out.device), channel] = 0
        return out

    with torch.no_grad(), hook_output(resolve_layer(model, layer), drop):
        for b, ch in chunk_pairs(n, k, chunk, x.device):
            channel = ch  # read by `drop` during this forward: copy i loses channel ch[i]
            logits = model(x[b])
            ablated[b, ch] = logits.gather(1, target[b, None])[:, 0].float()
    # Eq. 2: w_k = (y^c - y^c_k) / y^c, the relative drop of the class score without A_k.
    w = torch.where(y[:, None] != 0, (y[:, None] - ablated) / torch.where(y != 0, y, 1)[:, None], 0)
    # Eq. 3: ReLU(sum_k w_k A_k).
    return combine(w.to(c.acts.dtype), c.acts)


@register(context=("layer",), cost="perturbation")
def ablation_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None,
                 chunk: Count = 64) -> Tensor:
    """Activation maps weighted by how much the target logit drops when the channel is
    set to zero (one forward per channel and sample).

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        layer: dotted name of the convolutional layer.
        chunk: ablated copies per forward.

    Returns:
        [B,H,W] float32, upsampled bilinearly, not normalised.
    """
    return upsample(layer_map(model, x, target, layer, chunk), x.shape[-2:])
