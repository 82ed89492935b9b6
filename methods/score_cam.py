"""Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, "Score-CAM: Score-Weighted
Visual Explanations for Convolutional Neural Networks", CVPR Workshops 2020)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import capture, combine, minmax_channels, upsample
from faithbench.methods._common import Activation, check_choice, check_inputs, chunk_pairs, class_scores
from faithbench.params import Count

Weighting = Literal["class_prob", "channel_softmax"]


def layer_map(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None, chunk: int = 64,
              activation: Activation | None = None, weighting: Weighting = "class_prob") -> Tensor:
    """Score-CAM at the layer's resolution [B,h,w] (see ``score_cam``)."""
    target = check_inputs(x, target)
    check_choice("weighting", weighting, ("class_prob", "channel_softmax"))
    acts = capture(model, x, target, layer, grad=False).acts
    n, k = acts.shape[:2]
    scores = torch.zeros(n, k, device=x.device)
    flat = torch.zeros(n, k, dtype=torch.bool, device=x.device)
    act = "logit" if weighting == "channel_softmax" else activation
    with torch.no_grad():
        for b, c in chunk_pairs(n, k, chunk, x.device):
            # Eq. 3-4: H_k = s(Up(A_k)), the upsampled map min-max scaled to [0, 1],
            # masks the input; the masked image's class score weighs channel k.
            up = upsample(acts[b, c], x.shape[-2:])[:, None]
            mask = minmax_channels(up)
            flat[b, c] = mask.flatten(1).amax(1) == 0
            logits = model(x[b] * mask.to(x.dtype))
            scores[b, c] = class_scores(logits.float(), target[b], act)
    if weighting == "channel_softmax":
        w = scores.softmax(1)
    else:
        # The authors' code skips channels whose map is constant (no mask at all).
        w = torch.where(flat, 0.0, scores)
    # Eq. 5: ReLU(sum_k alpha_k A_k).
    return combine(w.to(acts.dtype), acts)


@register(context=("layer", "activation"), cost="perturbation")
def score_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None, chunk: Count = 64,
              activation: Activation | None = None, weighting: Weighting = "class_prob") -> Tensor:
    """Activation maps weighted by the class score of the input masked by each map.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        layer: dotted name of the convolutional layer (K channels = K forwards/sample).
        chunk: masked images per forward.
        activation: how the class score is read ("softmax", "sigmoid", "logit"); the
            runner fills softmax or sigmoid by model; None means softmax.
        weighting: "class_prob" (default, the authors' code: weight = the class
            probability of the masked input) or "channel_softmax" (pytorch-grad-cam and
            torchcam: softmax over channels of the masked inputs' target logits).

    Returns:
        [B,H,W] float32, upsampled bilinearly, not normalised.
    """
    return upsample(layer_map(model, x, target, layer, chunk, activation, weighting), x.shape[-2:])
