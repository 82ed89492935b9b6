"""Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, "Score-CAM: Score-Weighted
Visual Explanations for Convolutional Neural Networks", CVPR Workshops 2020)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.errors import check_choice
from faithbench.methods._cam import Capture, cam_method, upsample
from faithbench.methods._common import chunk_pairs
from faithbench.ops import Activation, class_scores, minmax
from faithbench.params import Count

Weighting = Literal["class_prob", "channel_softmax"]


def weights(c: Capture, *, model: nn.Module, x: Tensor, target: Tensor, chunk: int,
            activation: Activation | None, weighting: Weighting, **_: object) -> Tensor:
    """Channel weights [B,K]: the class score of the input masked by each channel's map."""
    check_choice("weighting", weighting, ("class_prob", "channel_softmax"))
    n, k = c.acts.shape[:2]
    scores = torch.zeros(n, k, device=x.device)
    flat = torch.zeros(n, k, dtype=torch.bool, device=x.device)
    act = "logit" if weighting == "channel_softmax" else activation
    with torch.no_grad():
        for b, ch in chunk_pairs(n, k, chunk, x.device):
            # Eq. 3-4: H_k = s(Up(A_k)), the upsampled map min-max scaled to [0, 1],
            # masks the input; the masked image's class score weighs channel k.
            mask = minmax(upsample(c.acts[b, ch], x.shape[-2:])[:, None])
            flat[b, ch] = mask.flatten(1).amax(1) == 0
            logits = model(x[b] * mask.to(x.dtype))
            scores[b, ch] = class_scores(logits.float(), target[b], act)
    if weighting == "channel_softmax":
        return scores.softmax(1)
    # The authors' code skips channels whose map is constant (no mask at all).
    return torch.where(flat, 0.0, scores)


@register(context=("layer", "activation"), cost="perturbation")
@cam_method(weights, grad=False)  # Eq. 5: ReLU(sum_k alpha_k A_k)
def score_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None, chunk: Count = 64,
              activation: Activation | None = None, weighting: Weighting = "class_prob") -> Tensor:
    """Activation maps weighted by the class score of the input masked by each map (K
    channels = K forwards per sample).

    Args:
        chunk: masked images per forward.
        activation: how the class score is read ("softmax", "sigmoid", "logit"); the
            runner fills softmax or sigmoid by model; None means softmax.
        weighting: "class_prob" (default, the authors' code: weight = the class
            probability of the masked input) or "channel_softmax" (pytorch-grad-cam and
            torchcam: softmax over channels of the masked inputs' target logits).
    """


layer_map = score_cam.layer_map
