"""Confidence-based metrics of Grad-CAM++ (Chattopadhyay et al., WACV 2018, Sec. 5.1.1):
Average Drop % and Increase in Confidence %, on the explanation map E = L ⊙ I.

How L is scaled to [0, 1]: the released code (github.com/adityac94/Grad_CAM_plus_plus,
misc/utils.py ``grad_CAM_plus``) takes ``cam = np.maximum(cam, 0); cam = cam / np.max(cam)``:
``normalisation="relu_max"`` (the default). torchcam and pytorch-grad-cam min-max
normalise, which also lifts a map's minimum to 0 (Grad-CAM maps after upsampling often
have min > 0): ``normalisation="minmax"``.

Where ⊙ happens: the released code reads images as RGB in [0, 1] (models/vgg_utils.py
``load_image``) and its VGG-16 scales by 255 and subtracts the BGR mean inside the graph
(models/vgg16.py ``build``), so L multiplies the image before mean subtraction and
unexplained pixels turn black (0 or 255 scale alike: the product is linear). That is
``space="pixel"`` (the default): E = s·x + (1 - s)·black in the model's input space,
with ``black`` the normalised value of a 0 pixel. torchcam and pytorch-grad-cam multiply
the normalised tensor instead (unexplained pixels become the dataset mean colour):
``space="normalised"``. pytorch-grad-cam's DropInConfidence also omits the division by
Y; we implement the paper's relative drop. (The repository has no Average Drop script:
E = L ⊙ I is the paper's, with the code's L and I.)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError, check_choice
from faithbench.metrics import register
from faithbench.metrics._common import Activation, clean, forward_chunks, nan_where
from faithbench.ops import class_scores, minmax
from faithbench.params import Count
from faithbench.preprocess import Preprocess
from faithbench.types import Batch

Space = Literal["pixel", "normalised"]
Normalisation = Literal["relu_max", "minmax"]
NORMALISATIONS = ["relu_max", "minmax"]


def scale_map(heatmap: Tensor, normalisation: str) -> Tensor:
    """The map L scaled to [0, 1], [B,H,W] -> [B,H,W].

    ``relu_max``: ``relu(h) / max(h)`` (Grad-CAM++'s code); a map with max <= 0 explains
    nothing and gives zeros, a constant positive map gives ones (E is the image).
    ``minmax``: ``(h - min) / (max - min)`` (torchcam, pytorch-grad-cam); a constant map
    gives zeros."""
    check_choice("normalisation", normalisation, NORMALISATIONS)
    if normalisation == "minmax":
        return minmax(heatmap)
    hi = heatmap.flatten(1).amax(1)[:, None, None]
    pos = hi > 0
    return torch.where(pos, heatmap.clamp(min=0) / torch.where(pos, hi, torch.ones_like(hi)),
                       torch.zeros_like(heatmap))


def explanation_image(x: Tensor, heatmap: Tensor, space: str,
                      preprocess: Preprocess | None, normalisation: str = "relu_max") -> Tensor:
    """E = (map scaled by ``scale_map``) ⊙ image, in the model's input space, [B,C,H,W]."""
    check_choice("space", space, ["pixel", "normalised"])
    s = scale_map(heatmap, normalisation)[:, None].to(x.dtype)
    if space == "normalised":
        return s * x
    if preprocess is None:
        # Guessing the normalisation would silently move "black" (ImageNet: -2.1;
        # mean/std 0.5: -1; Caffe: -104): refuse instead.
        raise ConfigError("space='pixel' needs the model's preprocess (context parameter "
                          "'preprocess') to find black pixels; pass it, or use "
                          "space='normalised' (torchcam / pytorch-grad-cam convention)")
    black = preprocess.normalize(torch.zeros(3, 1, 1, dtype=x.dtype, device=x.device))
    return s * x + (1 - s) * black


def confidences(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor, space: str,
                normalisation: str, preprocess: Preprocess | None,
                activation: Activation | None, chunk: int) -> tuple[Tensor, Tensor, Tensor]:
    """(Y on the image [B], O on the explanation map [B], finite rows [B]); one forward
    over the 2B images in chunks."""
    h, ok = clean(heatmap)
    both = torch.cat([x, explanation_image(x, h, space, preprocess, normalisation)])
    logits = forward_chunks(model, both.shape[0], lambda r: both[r.to(x.device)], chunk)
    p = class_scores(logits, target.repeat(2), activation, via_log_softmax=True)
    b = x.shape[0]
    return p[:b], p[b:], ok


@register(higher_is_better=False, context=("activation", "preprocess"),
          outputs={"average_drop_change": False, "average_drop_score": True,
                   "average_drop_explained_score": True})
def average_drop(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                 batch: Batch | None = None, space: Space = "pixel",
                 normalisation: Normalisation = "relu_max",
                 activation: Activation | None = None, preprocess: Preprocess | None = None,
                 chunk: Count = 128) -> dict[str, Tensor]:
    """Average Drop % (Grad-CAM++): ``100 * max(0, Y - O) / Y`` per image, Y the
    target's class score on the image, O on the explanation map E (see module doc).

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W]; target: [B] int64.
        space: ``pixel`` (the paper) | ``normalised`` (torchcam, pytorch-grad-cam).
        normalisation: ``relu_max`` (the paper's code: relu(L) / max(L)) | ``minmax``
            (torchcam, pytorch-grad-cam); see ``scale_map`` for degenerate maps.
        preprocess: the model's Preprocess, to find black in input space; required for
            ``pixel`` (a ConfigError otherwise: the runner passes the model's).
    Returns:
        ``average_drop`` [B] in [0,100]; ``average_drop_change`` [B] the signed
        ``100 (Y - O) / Y`` (negative: confidence rose; for Win %, computed at report time);
        ``average_drop_score`` (Y) and ``average_drop_explained_score`` (O) [B].
        Costs 2 forwards per sample. Y == 0 gives a drop of 0.
    """
    y, o, ok = confidences(model, x, heatmap, target, space, normalisation, preprocess,
                          activation, chunk)
    change = torch.where(y > 0, 100 * (y - o) / y.clamp(min=torch.finfo(y.dtype).tiny),
                         torch.zeros_like(y))
    return {"average_drop": nan_where(change.clamp(min=0), ok),
            "average_drop_change": nan_where(change, ok),
            "average_drop_score": nan_where(y, ok), "average_drop_explained_score": nan_where(o, ok)}


@register(higher_is_better=True, context=("activation", "preprocess"))
def increase_in_confidence(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                           batch: Batch | None = None, space: Space = "pixel",
                           normalisation: Normalisation = "relu_max",
                           activation: Activation | None = None,
                           preprocess: Preprocess | None = None,
                           chunk: Count = 128) -> dict[str, Tensor]:
    """Increase in Confidence % (Grad-CAM++): ``100 * [O > Y]`` per image, so the mean
    over images is the share (%) of images whose score rises on the explanation map.

    Args: as ``average_drop``.
    Returns:
        ``increase_in_confidence`` [B], 0 or 100. Costs 2 forwards per sample.
    """
    y, o, ok = confidences(model, x, heatmap, target, space, normalisation, preprocess,
                          activation, chunk)
    return {"increase_in_confidence": nan_where(100.0 * (o > y).float(), ok)}
