"""``timm``: any timm ImageNet-1k classifier by name (``resnet50.a1_in1k``, ``convnext_tiny``),
with pretrained weights read offline.

Weights come from ``checkpoint`` when given, else from the Hugging Face cache
(``$HF_HOME/hub/models--timm--<name>/snapshots/*/model.safetensors`` or
``pytorch_model.bin``, where timm's own downloads land), else from torch hub's cache for
models whose weights are a URL. Nothing is downloaded: a missing file raises a
ConfigError that says what to fetch and where to put it. Safetensors are read with
``safetensors``; other files with ``torch.load(weights_only=True)``. Preprocessing comes
from the model's pretrained config; class names are ImageNet's. Vision transformers
(``vit_*``, ``deit_*`` including the distilled ones, ``swin_*``) get their token layout
(``faithbench.tokens``) and the last block's ``norm1`` as CAM layer.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from faithbench.checkpoint import load_state_dict
from faithbench.errors import ConfigError
from faithbench.models import register
from faithbench.models._cam import check_layer, timm_cam_layer
from faithbench.models._weights import tensors_sha256
from faithbench.preprocess import Preprocess
from faithbench.tokens import token_layout
from faithbench.types import ModelSpec

HF_FILES = ("model.safetensors", "pytorch_model.bin")


def find_cached(cfg: dict[str, Any]) -> Path | None:
    """The model's weights in the HF or torch hub cache, or None."""
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        for f in HF_FILES:
            p = try_to_load_from_cache(hub_id, f, cache_dir=constants.HF_HUB_CACHE)
            if isinstance(p, str):
                return Path(p)
    url = cfg.get("url")
    if url:
        p = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if p.is_file():
            return p
    return None


def cache_files(cfg: dict[str, Any], path: Path) -> tuple[str, ...]:
    """The files that decide which cached weights ``find_cached`` picks, with the one it
    picked: the HF cache's ``refs/main`` of the model's repository (it names the snapshot)
    and the snapshot's folder (a file added there changes it), present or not."""
    hub_id = cfg.get("hf_hub_id")
    if not hub_id:
        return (str(path),)
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}"
    guards = [repo / "refs" / "main"]
    if repo in path.parents:
        guards.append(path.parent)
    return (str(path), *map(str, guards))


def read_weights(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return load_state_dict(path)


def load_into(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Strict load; for checkpoints in an older layout, the model module's own
    ``checkpoint_filter_fn`` (as timm applies when it downloads) is tried first."""
    module = importlib.import_module(type(model).__module__)
    fn = getattr(module, "checkpoint_filter_fn", None)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        if fn is None:
            raise
        model.load_state_dict(fn(state, model))


def preprocess_of(cfg: dict[str, Any]) -> Preprocess:
    interp = cfg.get("interpolation", "bilinear")
    return Preprocess(size=int(cfg["input_size"][-1]),
                      resize="center_crop" if cfg.get("crop_mode", "center") == "center"
                      else "stretch",
                      crop_pct=float(cfg.get("crop_pct", 0.875)),
                      interpolation="bicubic" if interp == "bicubic" else "bilinear",
                      mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))


@register(label_space="imagenet")
def timm(arch: str = "resnet50.a1_in1k", checkpoint: str | None = None,
         cam_layer: str | None = None) -> ModelSpec:
    """A timm ImageNet-1k classifier.

    Args:
        arch: timm model name, optionally with its pretrained tag (``resnet50.a1_in1k``).
        checkpoint: weights file (timm layout) to use instead of the caches.
        cam_layer: dotted module name overriding the default (timm's last feature stage;
            for ViT, DeiT and Swin the last block's ``norm1``, read through the model's
            token layout: ``faithbench.models._cam``, ``faithbench.tokens``).
    """
    import timm as timm_lib

    from faithbench.labels import imagenet_class_names

    if not timm_lib.is_model(arch.split(".")[0]):
        from faithbench.errors import unknown_choice

        raise unknown_choice("timm model", arch, timm_lib.list_models())
    model = timm_lib.create_model(arch, pretrained=False)
    cfg = dict(model.pretrained_cfg)
    if cfg.get("num_classes", 1000) != 1000:
        raise ConfigError(f"timm {arch} has {cfg.get('num_classes')} classes; only "
                          "ImageNet-1k classifiers fit the imagenet label space")
    path = Path(checkpoint).expanduser() if checkpoint else find_cached(cfg)
    if path is None or not path.is_file():
        hub = cfg.get("hf_hub_id")
        where = (f"the Hugging Face cache: run `huggingface-cli download {hub}` where there is "
                 f"internet and copy ~/.cache/huggingface/hub/models--{hub.replace('/', '--')} "
                 "into this machine's HF cache ($HF_HOME/hub)" if hub else
                 f"torch hub's cache: {Path(torch.hub.get_dir()) / 'checkpoints'}/"
                 f"{str(cfg.get('url', '')).rsplit('/', 1)[-1]} (from {cfg.get('url')})")
        raise ConfigError(f"timm {arch}: pretrained weights not found "
                          f"{'at ' + str(path) if path else 'offline'}. Put them in {where}; "
                          "or pass model.checkpoint=/path/to/weights")
    state = read_weights(path)
    load_into(model, state)
    layer = check_layer(model, cam_layer) if cam_layer else timm_cam_layer(model)
    return ModelSpec(name=f"timm_{arch}", model=model.eval(), preprocess=preprocess_of(cfg),
                     class_names=imagenet_class_names(), label_space="imagenet",
                     weights_id=tensors_sha256(state), cam_layer=layer, multilabel=False,
                     weights_files=(str(path),) if checkpoint else cache_files(cfg, path),
                     token_layout=token_layout(model))
