"""Default CAM layers per architecture family, and checking a user's override.

The default is the last spatial feature map before global pooling (where CAM, Zhou et
al. CVPR 2016, and Grad-CAM, Selvaraju et al. ICCV 2017, read activations):

| family | layer | why |
| --- | --- | --- |
| ResNet / ResNeXt / Wide ResNet | ``layer4`` | last residual stage (TorchRay, Grad-CAM) |
| VGG | last ``nn.ReLU`` in ``features`` (``features.29`` for VGG16) | TorchRay's Grad-CAM layer: after the last conv, before the last max-pool |
| DenseNet | ``features`` | ends in ``norm5``; the model's own ReLU follows |
| MobileNet v2/v3, EfficientNet, ConvNeXt, RegNet (torchvision) | ``features`` / ``trunk_output`` | last stage of the trunk |
| Inception v3 | ``Mixed_7c`` | last mixed block |
| GoogLeNet | ``inception5b`` | last inception block |
| timm models | ``feature_info[-1]`` (EfficientNet: ``bn2``) | timm's own last-stage name (``layer4``, ``stages.3``...) |
| timm ViT / DeiT / ViT with registers | ``blocks.<last>.norm1`` | pytorch-grad-cam's documented ViT layer: the last block's output reaches the logits only through the class token, so its patch tokens have no gradient; the input of the last attention does |
| timm Swin | ``layers.<last>.blocks.<last>.norm1`` | pytorch-grad-cam's documented Swin layer |

Transformers' layers are read through their token layout (``faithbench.tokens``).
"""

from __future__ import annotations

from torch import nn

from faithbench.errors import unknown_choice
from faithbench.tokens import token_layout

_BY_PREFIX = [  # first match wins
    (("resnet", "resnext", "wide_resnet"), "layer4"),
    (("densenet", "mobilenet", "efficientnet", "convnext", "squeezenet", "alexnet"),
     "features"),
    (("mnasnet",), "layers"),
    (("regnet",), "trunk_output"),
    (("inception_v3",), "Mixed_7c"),
    (("googlenet",), "inception5b"),
]


def last_relu(module: nn.Module, prefix: str) -> str | None:
    """Dotted name of the last nn.ReLU inside ``module`` (named under ``prefix``)."""
    names = [n for n, m in module.named_modules() if isinstance(m, nn.ReLU)]
    return f"{prefix}.{names[-1]}" if names else None


def torchvision_cam_layer(arch: str, model: nn.Module) -> str | None:
    """The default CAM layer of a torchvision architecture; None when it has none
    (vision transformers: no spatial map before pooling)."""
    if arch.startswith("vgg"):
        return last_relu(model.features, "features")  # type: ignore[arg-type]
    if arch.startswith("shufflenet"):
        return "conv5"
    for prefixes, layer in _BY_PREFIX:
        if arch.startswith(prefixes):
            return layer
    return None


def transformer_cam_layer(model: nn.Module) -> str | None:
    """For a model with a token layout (timm ViT, DeiT, Swin...), the last module named
    ``norm1``: the pre-attention norm of the last block (``blocks.11.norm1``,
    ``layers.3.blocks.1.norm1``), pytorch-grad-cam's documented target layers. None for
    other models."""
    if token_layout(model) is None:
        return None
    names = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] == "norm1"]
    return names[-1] if names else None


def timm_cam_layer(model: nn.Module) -> str | None:
    """timm's own last feature stage (``feature_info``), when the model has one; for
    EfficientNets ``bn2`` (BatchNorm + activation after ``conv_head``), because their
    feature_info stops at ``blocks.6``, before the 1x1 head conv that feeds pooling; for
    transformers :func:`transformer_cam_layer`."""
    layer = transformer_cam_layer(model)
    if layer is not None:
        return layer
    if type(model).__name__ == "EfficientNet" and hasattr(model, "bn2"):
        return "bn2"
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    return info[-1].get("module") or None


def check_layer(model: nn.Module, layer: str | None) -> str | None:
    """``layer`` if it names a module of ``model``; a ConfigError with close matches
    otherwise."""
    if layer is None:
        return None
    names = [n for n, _ in model.named_modules() if n]
    if layer not in names:
        raise unknown_choice("CAM layer", layer, names)
    return layer
