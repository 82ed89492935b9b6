"""Models: ``builder(**params) -> ModelSpec`` (weights loaded, eval mode, on CPU).

Checkpoints are always read with ``torch.load(..., weights_only=True)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faithbench.registry import Entry, Registry
from faithbench.types import ModelSpec


@dataclass(frozen=True)
class ModelInfo:
    label_space: str = "imagenet"  # known before loading, to reject impossible pairs early


MODELS: Registry[ModelInfo] = Registry("model", __name__, ModelInfo)
register = MODELS.register


def get(name: str) -> Entry[ModelInfo]:
    return MODELS.get(name)


def names(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


def load(name: str, **params: Any) -> ModelSpec:
    """Build model ``name`` with its weights, in eval mode, gradients off for parameters."""
    spec: ModelSpec = MODELS.get(name).fn(**params)
    spec.model.eval()
    for p in spec.model.parameters():
        p.requires_grad_(False)
    return spec
