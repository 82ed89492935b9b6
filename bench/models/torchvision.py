"""``torchvision``: any torchvision ImageNet classifier by architecture name, with the
weights of one of its weight enums, read offline.

Weights come from ``checkpoint`` when given, else from torch hub's cache
(``$TORCH_HOME/hub/checkpoints/<file of the enum's URL>``, where torchvision itself keeps
them). Nothing is downloaded: a missing file raises a ConfigError that says which URL
to fetch and exactly where to put it. Preprocessing (resize, crop, mean/std,
interpolation) and class names come from the weight enum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from faithbench.checkpoint import load_state_dict
from faithbench.errors import ConfigError, unknown_choice
from faithbench.labels import imagenet_class_names
from faithbench.models import register
from faithbench.models._cam import check_layer, torchvision_cam_layer
from faithbench.models._weights import tensors_sha256
from faithbench.preprocess import Preprocess
from faithbench.types import ModelSpec

# Built with their auxiliary heads (as their checkpoints have them), dropped after loading.
_AUX = {"inception_v3": ("AuxLogits",), "googlenet": ("aux1", "aux2")}


def weights_enum(arch: str, weights: str) -> Any:
    """The weight enum member ``weights`` (``IMAGENET1K_V2``, ``DEFAULT``) of ``arch``."""
    import torchvision

    classifiers = torchvision.models.list_models(module=torchvision.models)
    if arch not in classifiers:
        raise unknown_choice("torchvision architecture", arch, classifiers)
    enum = torchvision.models.get_model_weights(arch)
    if weights not in enum.__members__:
        raise unknown_choice(f"weights of {arch}", weights, enum.__members__)
    return enum[weights]


def cached_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def preprocess_of(w: Any) -> Preprocess:
    """The enum's eval transform as a Preprocess (resize shorter side, centre crop)."""
    t = w.transforms()
    crop, resize = t.crop_size[0], t.resize_size[0]
    interp = "bicubic" if "BICUBIC" in str(t.interpolation) else "bilinear"
    return Preprocess(size=crop, resize="center_crop", crop_pct=crop / resize,
                      interpolation=interp, mean=tuple(t.mean), std=tuple(t.std))


@register(label_space="imagenet")
def torchvision(arch: str = "resnet50", weights: str = "DEFAULT",
                checkpoint: str | None = None, cam_layer: str | None = None) -> ModelSpec:
    """A torchvision ImageNet classifier.

    Args:
        arch: architecture name (``resnet50``, ``vgg16``, ``densenet121``...).
        weights: member of the architecture's weight enum (``IMAGENET1K_V1``, ``DEFAULT``).
        checkpoint: state dict file to use instead of the torch hub cache.
        cam_layer: dotted module name overriding the family default.
    """
    import torchvision as tv

    w = weights_enum(arch, weights)
    path = Path(checkpoint).expanduser() if checkpoint else cached_file(w.url)
    if not path.is_file():
        raise ConfigError(
            f"torchvision {arch} weights {w} are not available offline. Download {w.url} "
            f"and put it at {path} (torch hub's cache; set TORCH_HOME to move it), or pass "
            f"model.checkpoint=/path/to/{path.name}")
    kwargs: dict[str, Any] = {"num_classes": len(w.meta["categories"])}
    if arch in _AUX:
        kwargs.update(aux_logits=True, init_weights=False, transform_input=True)
    model = tv.models.get_model(arch, weights=None, **kwargs)
    state = load_state_dict(path)
    model.load_state_dict(state)
    for name in _AUX.get(arch, ()):
        setattr(model, name, None)
        model.aux_logits = False
    layer = check_layer(model, cam_layer) if cam_layer else torchvision_cam_layer(arch, model)
    return ModelSpec(name=f"torchvision_{arch}", model=model.eval(), preprocess=preprocess_of(w),
                     class_names=imagenet_class_names(), label_space="imagenet",
                     weights_id=tensors_sha256(state), cam_layer=layer, multilabel=False,
                     weights_files=(str(path),))
