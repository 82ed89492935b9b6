"""Shared helpers of the peer-library adapters (``captum``, ``pytorch_grad_cam``)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench.methods._common import reduce_channels


def import_peer(module: str, method: str) -> ModuleType:
    """Import an optional peer library, or fail naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"method {method!r} needs the optional package {module.split('.')[0]!r}: "
                          "pip install 'faithbench[compare]'") from e


@contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Restore every module's train/eval mode and every parameter's ``requires_grad``
    and ``.grad`` afterwards; parameters are frozen meanwhile, so a peer that calls
    ``.backward()`` accumulates nothing into them."""
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        for p, _, _ in params:
            p.requires_grad_(False)
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, req, grad in params:
            p.requires_grad_(req)
            p.grad = grad


def to_map(a: Tensor, size: tuple[int, int], reduce: str) -> Tensor:
    """A peer's attribution -> [B,H,W] float32: channels reduced ([B,C,h,w]), then
    bilinearly upsampled if at another resolution (layer attributions)."""
    if a.dim() == 4:
        a = reduce_channels(a, reduce)
    if a.dim() != 3:
        raise ValueError(f"cannot turn an attribution of shape {tuple(a.shape)} into [B,H,W] maps")
    if tuple(a.shape[-2:]) != tuple(size):
        a = F.interpolate(a[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return a.float()


def as_tensor(a: object, device: torch.device) -> Tensor:
    return a.to(device) if isinstance(a, Tensor) else torch.as_tensor(a).to(device)
