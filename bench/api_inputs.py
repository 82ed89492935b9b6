"""The inputs of ``faithbench.evaluate`` turned into what the runner reads: a ModelSpec
from a registry name, a ModelSpec or a bare ``nn.Module``, and Samples from a tensor of
model-ready images, a list of PIL images or paths, or a faithbench dataset."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.preprocess import Preprocess, with_overrides
from faithbench.types import BenchDataset, ModelSpec, Sample

Truth = Tensor | tuple[Tensor, Tensor] | None  # per sample: [n,4] boxes / [m,H,W] masks, with labels


def resolve_model(model: str | ModelSpec | nn.Module, device: torch.device, channels_last: bool,
                  preprocess: Preprocess | Mapping[str, Any] | None,
                  model_options: Mapping[str, Any]) -> ModelSpec:
    """A ModelSpec on ``device``: registry models load as the CLI loads them (same
    device placement and memory layout; ``preprocess`` overrides fields of the model's
    own, as ``model.preprocess``); a ModelSpec takes ``preprocess`` over its own; a bare
    module goes through ``from_module`` with ``preprocess`` and ``model_options``
    (cam_layer, class_names, label_space, multilabel, name)."""
    from omegaconf import OmegaConf

    from faithbench.jobs import ModelCache
    from faithbench.models.module import from_module

    if isinstance(model, str):  # preprocess: the CLI's model.preprocess overrides
        if isinstance(preprocess, Preprocess):
            preprocess = dataclasses.asdict(preprocess)
        node = OmegaConf.create({"name": model, **model_options,
                                 **({"preprocess": dict(preprocess)} if preprocess else {})})
        return ModelCache(size=1).load(node, device, channels_last)
    if isinstance(model, ModelSpec):
        spec = model
        if preprocess is not None:
            spec = dataclasses.replace(spec, preprocess=preprocess if isinstance(preprocess, Preprocess)
                                       else with_overrides(spec.preprocess, preprocess))
    elif isinstance(model, nn.Module):
        spec = from_module(model, preprocess=preprocess, **model_options)
    else:
        raise ConfigError(f"model must be a registry name, a ModelSpec or an nn.Module; got "
                          f"{type(model).__name__}")
    spec.model.to(device)
    if channels_last:
        spec.model.to(memory_format=torch.channels_last)
    return spec


def _labels(targets: Any, n: int) -> list[Tensor]:
    """Per-sample labels: ints (or multi-hot rows), checked against the image count."""
    if targets is None:
        raise ConfigError("targets are needed for images that are not a faithbench dataset: "
                          "one class index per image (or multi-hot rows)")
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, Tensor) else targets)
    if t.ndim not in (1, 2) or t.shape[0] != n:
        raise ConfigError(f"targets have shape {tuple(t.shape)}; expected [{n}] class indices "
                          f"(or [{n},K] multi-hot) for {n} images")
    return [r.float() if t.ndim == 2 else r.long() for r in t]


def _truth(items: Sequence[Truth] | None, n: int, what: str, label: Tensor, i: int) -> tuple[Tensor | None, Tensor | None]:
    """(values, labels) of sample ``i``: a bare tensor belongs to the sample's target."""
    if items is None:
        return None, None
    if len(items) != n:
        raise ConfigError(f"{what} has {len(items)} entries for {n} images")
    item = items[i]
    if item is None:
        return None, None
    vals, labs = item if isinstance(item, tuple) else (item, None)
    vals = torch.as_tensor(vals)
    if labs is None:
        if label.ndim != 0:
            raise ConfigError(f"{what}[{i}]: give (values, labels) for multi-label targets")
        labs = label.repeat(vals.shape[0])
    return vals, torch.as_tensor(labs).long()


def _read(img: Any) -> Tensor | None:
    """RGB [3,h,w] in [0, 1] from a PIL image or an image path (None, with a warning,
    for a file that cannot be decoded: the sample is counted as unreadable)."""
    from PIL import Image

    from faithbench.datasets._common import read_rgb

    if isinstance(img, (str, Path)):
        if not Path(img).is_file():
            raise ConfigError(f"image {str(img)!r} does not exist")
        return read_rgb(img)
    if not isinstance(img, Image.Image):
        raise ConfigError(f"images must be a tensor [N,3,H,W], PIL images or paths, or a "
                          f"faithbench dataset; got an item of type {type(img).__name__}")
    a = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255


def samples(images: Any, targets: Any, spec: ModelSpec, boxes: Sequence[Truth] | None,
            masks: Sequence[Truth] | None, limit: int | None = None) -> list[Sample | None]:
    """Samples of model-ready images (a tensor: boxes and masks in its pixels), or of raw
    images run through ``spec.preprocess`` (boxes and masks in original pixels), or a
    dataset's own samples (None where unreadable, as the runner counts them); the first
    ``limit`` only, when given."""
    from faithbench.datasets._common import make_sample

    if isinstance(images, BenchDataset):
        if targets is not None or boxes is not None or masks is not None:
            raise ConfigError("a faithbench dataset brings its own labels, boxes and masks: "
                              "leave targets, boxes and masks unset")
        return [images[i] for i in range(min(len(images), limit or len(images)))]
    if limit:
        images, targets = images[:limit], None if targets is None else targets[:limit]
        boxes, masks = (None if t is None else t[:limit] for t in (boxes, masks))
    if isinstance(images, Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"images tensor has shape {tuple(images.shape)}; expected "
                              "[N,3,H,W] normalised for the model")
        raw = None
    else:
        raw = [_read(img) for img in images]
    n = len(images)
    labels = _labels(targets, n)
    out: list[Sample | None] = []
    for i in range(n):
        b, bl = _truth(boxes, n, "boxes", labels[i], i)
        m, ml = _truth(masks, n, "masks", labels[i], i)
        if raw is None:
            out.append(Sample(image=images[i].float(), label=labels[i], id=str(i), boxes=b,
                              box_labels=bl, masks=None if m is None else m.bool(), mask_labels=ml,
                              orig_size=tuple(images.shape[-2:])))
            continue
        out.append(None if raw[i] is None else make_sample(
            spec.preprocess, raw[i], labels[i], str(i), boxes=b, box_labels=bl,
            masks=None if m is None else m.bool(), mask_labels=ml))
    return out
