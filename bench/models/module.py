"""Any ``nn.Module`` as a faithbench model: :func:`from_module` wraps it in a ModelSpec
with a declared input pipeline, class names and CAM layer, and :func:`find_cam_layer`
picks a CAM layer for a module that names none.

The CAM layer rule is torchcam's (``locate_candidate_layer``): one forward pass of a
zero image with a hook on every module, then the module that finished last among those
whose output is a 4-D map with a spatial side larger than 1 (``[B,C,h,w]``, before
flattening or global pooling). A container finishes after its children, so for a
``Sequential`` trunk the trunk itself is chosen, as torchcam does.

Vision transformers output tokens, not maps: for a module with a token layout
(``faithbench.tokens``: timm ViT, DeiT, Swin are recognised, any other module can be
given one with ``token_layout=``) the CAM layer is the last block's ``norm1``, as
pytorch-grad-cam documents (``faithbench.models._cam.transformer_cam_layer``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.models._cam import check_layer, transformer_cam_layer
from faithbench.models._weights import tensors_sha256
from faithbench.plugins import source_identity
from faithbench.preprocess import Preprocess, with_overrides
from faithbench import tokens
from faithbench.tokens import TokenLayout
from faithbench.types import ModelSpec

log = logging.getLogger("faithbench")


def probe(module: nn.Module, input_size: tuple[int, int, int]) -> tuple[list[tuple[str, tuple[int, ...]]], Tensor]:
    """Run one zero image of ``input_size`` (C, H, W) through ``module`` in eval mode.

    Returns:
        ([(module name, output shape)] in the order the modules finished, the output).
    """
    shapes: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for name, m in module.named_modules():
        def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
            if isinstance(out, Tensor):
                shapes.append((name, tuple(out.shape)))
        handles.append(m.register_forward_hook(hook))
    was_training = module.training
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        module.eval()
        with torch.no_grad():
            out = module(torch.zeros(1, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return shapes, out


def find_cam_layer(module: nn.Module, input_size: tuple[int, int, int] = (3, 224, 224)) -> str | None:
    """The dotted name of the last module with a spatial output ``[B,C,h,w]`` (h or w
    larger than 1), as torchcam's ``locate_candidate_layer``; None when there is none
    (the module itself is never chosen). The choice is logged. For a transformer (a
    module with a token layout) the last block's ``norm1`` instead.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                     nn.Flatten(), nn.Linear(4, 2))
        >>> find_cam_layer(net, (3, 8, 8))
        '1'
    """
    layer = transformer_cam_layer(module)
    if layer is not None:
        log.info("%s: CAM layer %r (a transformer's last norm1)", type(module).__name__, layer)
        return layer
    shapes, _ = probe(module, input_size)
    return pick_layer(shapes, type(module).__name__)


def pick_layer(shapes: list[tuple[str, tuple[int, ...]]], what: str) -> str | None:
    """torchcam's rule over :func:`probe`'s shapes, with the choice logged."""
    layer = next((n for n, s in reversed(shapes)
                  if n and len(s) == 4 and any(v != 1 for v in s[2:])), None)
    if layer is None:
        log.warning("%s: no module has a spatial output [B,C,h,w]; CAM methods need "
                    "cam_layer=<module name>", what)
    else:
        log.info("%s: CAM layer %r (the last module with a spatial output)", what, layer)
    return layer


def module_weights_id(module: nn.Module) -> str:
    """Identity of a module's numbers: the hash of its state dict's tensors together with
    the source identity (path, distribution, source hash) of its class, so that a change
    to its weights or its code changes run and cache keys."""
    ident = source_identity(type(module))
    h = hashlib.sha256(tensors_sha256(module.state_dict()).encode())
    h.update(json.dumps(ident, sort_keys=True).encode())
    return h.hexdigest()


def as_preprocess(preprocess: Preprocess | Mapping[str, Any] | None) -> Preprocess:
    """A Preprocess from a Preprocess, a mapping of its fields (over the defaults:
    224 px, centre crop 0.875, bilinear, ImageNet mean/std) or None (the defaults)."""
    if preprocess is None or isinstance(preprocess, Preprocess):
        return preprocess or Preprocess()
    if not isinstance(preprocess, Mapping):
        raise ConfigError(f"preprocess={preprocess!r} must be a faithbench Preprocess or a "
                          "mapping of its fields (size, resize, crop_pct, interpolation, mean, std)")
    return with_overrides(Preprocess(), preprocess)


def from_module(module: nn.Module, *, preprocess: Preprocess | Mapping[str, Any] | None = None,
                class_names: Sequence[str] | None = None, label_space: str = "custom",
                cam_layer: str | None = None, multilabel: bool = False, name: str | None = None,
                input_size: tuple[int, int, int] | None = None,
                token_layout: TokenLayout | None = None) -> ModelSpec:
    """A ModelSpec for any classifier module returning logits ``[B,K]``.

    Args:
        module: the classifier; put in eval mode, its parameters' gradients turned off.
        preprocess: its input pipeline (a Preprocess, or a mapping of its fields).
        class_names: K names; default ``"0"``..``"K-1"`` (K read from one forward pass).
        label_space: the label space datasets must share (``imagenet``, ``custom``...).
        cam_layer: dotted module name for CAM methods; None: :func:`find_cam_layer`.
        multilabel: sigmoid outputs (one row per present class) rather than softmax.
        name: the model's name in runs; default the module's class name.
        input_size: (C, H, W) of the probing forward; default (3, size, size).
        token_layout: how a transformer's tokens read as a map (``faithbench.tokens``),
            set on the module; None: recognised for timm transformers, else none (a CNN).
    Returns:
        the ModelSpec; ``weights_id`` from :func:`module_weights_id`.
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model must be a torch nn.Module, got {type(module).__name__}")
    pre = as_preprocess(preprocess)
    size = input_size or (3, pre.size, pre.size)
    shapes, out = probe(module, size)
    if out.ndim != 2:
        raise ConfigError(f"model {type(module).__name__} returned shape {tuple(out.shape)} for "
                          f"an input of shape {(1, *size)}; expected logits [B,K]")
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(out.shape[1])]
    if len(names) != out.shape[1]:
        raise ConfigError(f"model {type(module).__name__} has {out.shape[1]} outputs but "
                          f"{len(names)} class names were given")
    if token_layout is not None:
        tokens.set_token_layout(module, token_layout)
    layout = tokens.token_layout(module)
    layer = (check_layer(module, cam_layer) if cam_layer else
             transformer_cam_layer(module) or pick_layer(shapes, type(module).__name__))
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return ModelSpec(name=name or type(module).__name__, model=module, preprocess=pre,
                     class_names=names, label_space=label_space,
                     weights_id=module_weights_id(module), cam_layer=layer,
                     multilabel=multilabel, token_layout=layout)
