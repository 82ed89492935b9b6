"""Class activation mapping (Zhou, Khosla, Lapedriza, Oliva & Torralba, "Learning Deep
Features for Discriminative Localization", CVPR 2016)."""

from __future__ import annotations

from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.methods import register
from faithbench.methods._cam import Capture, cam_method, resolve_layer
from faithbench.tokens import token_layout


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


def check_model(model: nn.Module) -> None:
    """``MethodInfo.check_model``: a ConfigError, before any run opens, for a model that
    classifies a class token (a ViT) instead of pooled features."""
    layout = token_layout(model)
    if layout is not None and layout.prefix_tokens:
        raise ConfigError(
            f"cam needs layer -> global average pooling -> linear classifier; "
            f"{type(model).__name__} has {layout.prefix_tokens} class/distillation/register "
            "token(s) and no such head (a ViT classifies its class token): use grad_cam")


def weights(c: Capture, *, model: nn.Module, layer: str | None, classifier: str | None,
            target: Tensor, **_: object) -> Tensor:
    """Sec. 2: M_c(x, y) = sum_k w^c_k f_k(x, y), w^c the classifier row of class c [B,K]
    (the bias is left out)."""
    check_model(model)
    fc = find_classifier(model, classifier)
    if fc.in_features != c.acts.shape[1]:
        raise ConfigError(f"classifier takes {fc.in_features} features but layer {layer!r} has "
                          f"{c.acts.shape[1]} channels: cam needs layer -> global average pool -> linear")
    return fc.weight.detach()[target]


@register(context=("layer",), cost="forward", models="cnn", check_model=check_model)
@cam_method(weights, grad=False, relu=False)
def cam(model: nn.Module, x: Tensor, target: Tensor, layer: str | None = None,
        classifier: str | None = None) -> Tensor:
    """Class activation map of a global-average-pooling network.

    Valid only when ``layer`` feeds global pooling and then the linear ``classifier``
    (ResNet ``layer4`` -> ``fc``): average pooling, or max pooling as in the paper's GMP
    comparison (``shapes_cnn_gmp``), where the map is the same sum and the logit is
    ``sum_k w^c_k max f_k``. Swin transformers qualify with ``layer='norm'`` (their
    final norm is averaged over positions and fed to ``head.fc``); ViTs, which classify a
    class token, do not and raise a ConfigError. The map is signed, as in the paper (no
    ReLU; the bias is left out); for either pooling ReLU(cam) / (h*w) equals Grad-CAM.

    Args:
        classifier: dotted name of the final nn.Linear; default: the last one.
    """


layer_map = cam.layer_map
