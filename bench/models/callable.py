"""``callable``: a model built by any factory named ``module:function`` (a script on
the working directory or ``PYTHONPATH``, or an installed package), for classifiers that
faithbench does not ship: ``model=callable model.fn=my_models:build``.

The factory returns an ``nn.Module`` returning logits ``[B,K]`` (or a ready ModelSpec,
used as it is). Its input pipeline is declared here with ``faithbench.preprocess``'s
names, its CAM layer is ``cam_layer`` or found by ``faithbench.models.module.find_cam_layer``,
and its identity in run and cache keys is its weights' hash plus the factory's and the
module class's source identity (distribution version, source file hash).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from faithbench.checkpoint import load_state_dict
from faithbench.errors import ConfigError
from faithbench.models import register
from faithbench.models.module import from_module
from faithbench.plugins import load_object, source_identity
from faithbench.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, with_overrides
from faithbench.types import ModelSpec


def read_class_names(class_names: list[str] | str | None) -> list[str] | None:
    """A list of names as given, or read from a text file with one name per line."""
    if class_names is None or isinstance(class_names, (list, tuple)):
        return None if class_names is None else [str(c) for c in class_names]
    path = Path(str(class_names)).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.class_names={class_names!r} is neither a list nor an existing "
                          "text file with one class name per line")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@register(name="callable", label_space="custom")
def callable_model(fn: str | None = None, size: int = 224,
                   resize: Literal["center_crop", "stretch", "shorter_side"] = "center_crop",
                   crop_pct: float = 0.875,
                   interpolation: Literal["bilinear", "bicubic"] = "bilinear",
                   mean: list[float] | None = None, std: list[float] | None = None,
                   cam_layer: str | None = None, class_names: list[str] | str | None = None,
                   label_space: str = "custom", multilabel: bool = False,
                   checkpoint: str | None = None, **kwargs: Any) -> ModelSpec:
    """A classifier from a factory ``fn`` called with ``**kwargs``.

    Args:
        fn: ``module:function`` returning an ``nn.Module`` (or a ModelSpec); required.
        size, resize, crop_pct, interpolation, mean, std: its input pipeline
            (``faithbench.preprocess.Preprocess``; mean/std default to ImageNet's).
        cam_layer: dotted module name for CAM methods; null: the last module with a
            spatial output (torchcam's rule), logged.
        class_names: the K class names, or a text file with one per line; null: "0".."K-1".
        label_space: datasets must share it (and, for ``custom``, the class names).
        multilabel: sigmoid outputs rather than softmax.
        checkpoint: a state dict file loaded (strictly) into the module.
        kwargs: passed to ``fn``.
    """
    if not fn:
        raise ConfigError("model 'callable' needs model.fn=package.module:function, a factory "
                          "returning an nn.Module")
    factory = load_object(fn, "model")
    if not callable(factory):
        raise ConfigError(f"model fn {fn!r} is not callable")
    built = factory(**kwargs)
    if isinstance(built, ModelSpec):
        return built
    pre = with_overrides(Preprocess(), {"size": size, "resize": resize, "crop_pct": crop_pct,
                                        "interpolation": interpolation,
                                        "mean": mean or IMAGENET_MEAN, "std": std or IMAGENET_STD})
    if checkpoint is not None:
        try:
            built.load_state_dict(load_state_dict(checkpoint))
        except RuntimeError as e:
            raise ConfigError(f"model.checkpoint={checkpoint!r} does not fit {fn}: "
                              f"{str(e).splitlines()[0]}") from None
    spec = from_module(built, preprocess=pre, class_names=read_class_names(class_names),
                       label_space=label_space, cam_layer=cam_layer, multilabel=multilabel,
                       name=fn)
    ident = hashlib.sha256((spec.weights_id + json.dumps(source_identity(factory),
                                                         sort_keys=True)).encode())
    return dataclasses.replace(spec, weights_id=ident.hexdigest())
