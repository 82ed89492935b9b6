"""Models: ``builder(**params) -> ModelSpec`` (weights loaded, eval mode, on CPU).

Checkpoints are always read with ``torch.load(..., weights_only=True)``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faithbench.preprocess import with_overrides
from faithbench.registry import Registry
from faithbench.types import ModelSpec


@dataclass(frozen=True)
class ModelInfo:
    label_space: str = "imagenet"  # known before loading, to reject impossible pairs early


# A plugin builder that does not register itself gets the default ModelInfo.
MODELS: Registry[ModelInfo] = Registry("model", __name__, ModelInfo, lambda fn: ModelInfo())
# get(name): the entry, or an error listing the valid names; names("grad_*"): sorted matches
register, get, names = MODELS.register, MODELS.get, MODELS.names


def load(name: str, preprocess: Mapping[str, Any] | None = None, **params: Any) -> ModelSpec:
    """Build model ``name`` with its weights, in eval mode, gradients off for parameters.

    ``preprocess`` replaces fields of the model's own ``Preprocess`` (config key
    ``model.preprocess``, e.g. ``{resize: stretch, antialias: false}``): presets use it
    to replay a paper's input pipeline. It is part of the run key and the heatmap cache
    key like every other model parameter."""
    spec: ModelSpec = MODELS.get(name).fn(**params)
    spec.preprocess = with_overrides(spec.preprocess, preprocess)
    spec.model.eval()
    for p in spec.model.parameters():
        p.requires_grad_(False)
    return spec
