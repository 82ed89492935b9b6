"""Contrastive excitation backprop (Zhang, Lin, Brandt, Shen & Sclaroff, "Top-down
Neural Attention by Excitation Backprop", ECCV 2016, Sec. 3.3), TorchRay's variant."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._cam import upsample
from faithbench.methods._common import check_inputs
from faithbench.methods._excitation import check_model, excitation


@register(context=("layer",), cost="backward", models="cnn", check_model=check_model)
def contrastive_excitation_backprop(model: nn.Module, x: Tensor, target: Tensor,
                                    layer: str | None = None, contrast_layer: str | None = None,
                                    classifier_layer: str | None = None) -> Tensor:
    """Excitation backprop of the target against its dual: the signal that reaches
    ``contrast_layer`` from the classifier with negated weights (every class but the
    target) is subtracted there from the target's own, the difference is passed on down
    to ``layer``, and the map is max(sum over channels, 0), upsampled bilinearly.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        layer: where the signal is read (the model's CAM layer by default; TorchRay's
            pointing benchmark: VGG16 ``features.23`` (pool4), ResNet50 ``layer3``).
        contrast_layer: a module after ``layer`` at whose output the dual signal is
            subtracted; None: at the input of ``classifier_layer``, which is where
            TorchRay's benchmark subtracts it (VGG16 ``classifier.4``, relu7, then an
            eval-mode dropout; ResNet50 ``avgpool``).
        classifier_layer: the layer whose weights are negated (default: the last Conv /
            Linear module, as TorchRay).

    Returns:
        [B,H,W] float32, non-negative.
    """
    signal = excitation(model, x, check_inputs(x, target), layer, contrastive=True,
                        contrast_layer=contrast_layer, classifier=classifier_layer)
    return upsample(signal.sum(1).clamp(min=0), x.shape[-2:])
