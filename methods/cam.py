"""Class activation mapping (Zhou, Khosla, Lapedriza, Oliva & Torralba, "Learning Deep
Features for Discriminative Localization", CVPR 2016)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.methods import register
from faithbench.methods._cam import capture, combine, resolve_layer, upsample
from faithbench.methods._common import check_inputs


def find_classifier(model: nn.Module, classifier: str | None) -> nn.Linear:
    """The module named ``classifier``, or else the model's last ``nn.Linear``."""
    if classifier:
        fc = resolve_layer(model, classifier)
    else:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError("cam needs a final nn.Linear classifier; the model has none "
                              "(set `classifier` to its dotted name)")
        fc = linears[-1]
    if not isinstance(fc, nn.Linear):
        raise ConfigError(f"classifier {classifier!r} is a {type(fc).__name__}, not an nn.Linear")
    return fc


def layer_map(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None,
              classifier: str | None = None) -> Tensor:
    """CAM at the layer's resolution [B,h,w] (see ``cam``)."""
    target = check_inputs(x, target)
    fc = find_classifier(model, classifier)
    acts = capture(model, x, target, layer, grad=False).acts
    if fc.in_features != acts.shape[1]:
        raise ConfigError(f"classifier takes {fc.in_features} features but layer {layer!r} has "
                          f"{acts.shape[1]} channels: cam needs layer -> global average pool -> linear")
    # Sec. 2: M_c(x, y) = sum_k w^c_k f_k(x, y), w^c the classifier row of class c.
    w = fc.weight.detach()[target].to(acts.dtype)
    return combine(w, acts, relu=False)


@register(context=("layer",), cost="forward")
def cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None,
        classifier: str | None = None) -> Tensor:
    """Class activation map of a global-average-pooling network.

    Valid only when ``layer`` feeds global average pooling and then the linear
    ``classifier`` (ResNet ``layer4`` -> ``fc``). The map is signed, as in the paper (no
    ReLU; the bias is left out); for such models ReLU(cam) / (h*w) equals Grad-CAM.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        layer: dotted name of the last convolutional block (before pooling).
        classifier: dotted name of the final nn.Linear; default: the last one.

    Returns:
        [B,H,W] float32, upsampled bilinearly.
    """
    return upsample(layer_map(model, x, target, layer, classifier), x.shape[-2:])
