"""Ablation-CAM (Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep
Convolutional Network via Gradient-free Localization", WACV 2020)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import Capture, cam_method, hook_layer
from faithbench.methods._common import chunk_pairs
from faithbench.params import Count


def weights(c: Capture, *, model: nn.Module, x: Tensor, target: Tensor, layer: str | None,
            chunk: int, **_: object) -> Tensor:
    """Eq. 2: w_k = (y^c - y^c_k) / y^c [B,K], the relative drop of the class score
    without A_k (one forward per channel and sample)."""
    y = c.logits.gather(1, target[:, None])[:, 0].float()  # [B]
    n, k = c.acts.shape[:2]
    ablated = torch.zeros(n, k, device=x.device)
    channel = torch.zeros(0, dtype=torch.int64)

    def drop(out: Tensor) -> Tensor:
        out = out.clone()
        out[torch.arange(out.shape[0], device=out.device), channel] = 0
        return out

    with torch.no_grad(), hook_layer(model, layer, drop, x.shape[-2:]):
        for b, ch in chunk_pairs(n, k, chunk, x.device):
            channel = ch  # read by `drop` during this forward: copy i loses channel ch[i]
            logits = model(x[b])
            ablated[b, ch] = logits.gather(1, target[b, None])[:, 0].float()
    return torch.where(y[:, None] != 0, (y[:, None] - ablated) / torch.where(y != 0, y, 1)[:, None], 0)


@register(context=("layer",), cost="perturbation")
@cam_method(weights, grad=False)  # Eq. 3: ReLU(sum_k w_k A_k)
def ablation_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None,
                 chunk: Count = 64) -> Tensor:
    """Activation maps weighted by how much the target logit drops when the channel is
    set to zero.

    Args:
        chunk: ablated copies per forward.
    """


layer_map = ablation_cam.layer_map
