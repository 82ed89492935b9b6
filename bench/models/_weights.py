"""Stable identities of weights (part of cache and run keys)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensors_sha256(state: dict[str, Tensor]) -> str:
    """sha256 over the tensors' values, shapes and dtypes in order (names ignored, so a
    renamed copy of the same weights has the same identity)."""
    h = hashlib.sha256()
    for t in state.values():
        t = t.detach().to("cpu").contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
