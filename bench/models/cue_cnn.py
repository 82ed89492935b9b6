"""``cue_shape_cnn`` and ``cue_marker_cnn``: two CNNs trained on the same ``cues`` images
with different label rules (the known-truth track, after BAM, Yang & Kim 2019).

``cue_shape_cnn`` labels an image by its class shape, ``cue_marker_cnn`` by the colour
of its small marker; each also has a ``none`` class, taught on the same scenes re-drawn
without its cue, so that removing the cue it uses changes its prediction (the runner
verifies this by intervention before scoring). Architecture: ``ShapesCNN`` (conv blocks,
global average pooling, one linear layer; CAM layer ``block3``), both fine-tuned from
the conv blocks of ``shapes_cnn`` with a fresh final layer. Weights:
``weights/cue_shape_cnn.pt`` and ``weights/cue_marker_cnn.pt``, made by
``scripts/train_cue_models.py``.
"""

from __future__ import annotations

from pathlib import Path

from faithbench.checkpoint import load_state_dict
from faithbench.models import register
from faithbench.labels import CUE_CLASSES, cue_space
from faithbench.models._weights import file_sha256
from faithbench.models.shapes_cnn import PREPROCESS, ShapesCNN
from faithbench.types import ModelSpec

WEIGHTS = Path(__file__).parent / "weights"
CLASSES = CUE_CLASSES  # per rule; the same object as faithbench.datasets.cues.CLASSES


def build(rule: str) -> ShapesCNN:
    """An untrained network for ``rule`` (its output size is the rule's class count)."""
    return ShapesCNN(num_classes=len(CLASSES[rule]))


def _load(rule: str, checkpoint: str | None) -> ModelSpec:
    name = f"cue_{rule}_cnn"
    path = Path(checkpoint).expanduser() if checkpoint else WEIGHTS / f"{name}.pt"
    model = build(rule)
    model.load_state_dict(load_state_dict(path))
    return ModelSpec(name=name, model=model.eval(), preprocess=PREPROCESS,
                     class_names=list(CLASSES[rule]), label_space=cue_space(rule),
                     weights_id=file_sha256(path), cam_layer="block3", multilabel=False,
                     weights_files=(str(path),))


@register(label_space="cues:rule=shape")
def cue_shape_cnn(checkpoint: str | None = None) -> ModelSpec:
    """The bundled shape-rule model of the known-truth track.

    Args:
        checkpoint: another state dict of the same architecture; the bundled one by default.
    """
    return _load("shape", checkpoint)


@register(label_space="cues:rule=marker")
def cue_marker_cnn(checkpoint: str | None = None) -> ModelSpec:
    """The bundled marker-colour-rule model of the known-truth track.

    Args:
        checkpoint: another state dict of the same architecture; the bundled one by default.
    """
    return _load("marker", checkpoint)
