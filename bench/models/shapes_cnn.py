"""``shapes_cnn``: a small CNN for the synthetic ``shapes`` set, shipped trained, and
``shapes_cnn_gmp``, the same network with global max pooling.

Conv blocks, then global average pooling and one linear layer, so CAM (Zhou et al.,
CVPR 2016) applies exactly: the logit of class c is the spatial mean of
``fc.weight[c] @ block3(x)`` plus the bias. ``shapes_cnn_gmp`` pools by the spatial
maximum instead (the paper's GAP-vs-GMP comparison, Sec. 2-3): its logit of class c is
``fc.weight[c] @ max_xy block3(x)`` plus the bias, and CAM is the same map
``fc.weight[c] @ block3(x)``. Activations are separate ``nn.ReLU`` modules (not
in-place), which hook-based methods such as guided backprop need. Weights:
``weights/shapes_cnn.pt`` and ``weights/shapes_cnn_gmp.pt`` (state dicts), made by
``scripts/train_shapes_cnn.py`` (``--pooling gmp`` for the second).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch import Tensor, nn

from faithbench.checkpoint import load_state_dict
from faithbench.labels import SHAPES_CLASSES
from faithbench.models import register
from faithbench.models._weights import file_sha256
from faithbench.preprocess import Preprocess
from faithbench.types import ModelSpec

WEIGHTS = Path(__file__).parent / "weights" / "shapes_cnn.pt"
WEIGHTS_GMP = WEIGHTS.with_name("shapes_cnn_gmp.pt")
Pooling = Literal["gap", "gmp"]
# Inputs are 64x64 scenes taken as they are; mean/std roughly centre the pixel range.
PREPROCESS = Preprocess(size=64, resize="stretch", mean=(0.5, 0.5, 0.5),
                        std=(0.25, 0.25, 0.25))


def _block(cin: int, cout: int, convs: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ShapesCNN(nn.Module):
    """[B,3,64,64] -> logits [B,5]. ``block3`` (16x16 maps at 64x64 input) is the last
    conv block and the default CAM layer; ``pooling`` is global average (``gap``) or
    global max (``gmp``) pooling of it. Both have the same state dict keys."""

    def __init__(self, num_classes: int = len(SHAPES_CLASSES), width: int = 16,
                 pooling: Pooling = "gap") -> None:
        super().__init__()
        self.block1 = _block(3, width, 1, pool=True)  # 64 -> 32
        self.block2 = _block(width, 2 * width, 1, pool=True)  # 32 -> 16
        self.block3 = _block(2 * width, 4 * width, 2, pool=False)  # 16 -> 16
        if pooling not in ("gap", "gmp"):
            raise ValueError(f"pooling {pooling!r}: expected 'gap' or 'gmp'")
        self.pool = nn.AdaptiveAvgPool2d(1) if pooling == "gap" else nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(self.pool(x).flatten(1))


@register(label_space="shapes")
def shapes_cnn(checkpoint: str | None = None) -> ModelSpec:
    """The bundled shapes classifier.

    Args:
        checkpoint: optional path to another state dict of the same architecture (a
            retrained model); the bundled weights by default.
    """
    return _load("shapes_cnn", "gap", Path(checkpoint).expanduser() if checkpoint else WEIGHTS)


@register(label_space="shapes")
def shapes_cnn_gmp(checkpoint: str | None = None) -> ModelSpec:
    """The bundled shapes classifier with global max pooling (CAM paper, Sec. 2-3).

    Args:
        checkpoint: optional path to another state dict of the same architecture; the
            bundled ``weights/shapes_cnn_gmp.pt`` by default.
    """
    return _load("shapes_cnn_gmp", "gmp",
                 Path(checkpoint).expanduser() if checkpoint else WEIGHTS_GMP)


def _load(name: str, pooling: Pooling, path: Path) -> ModelSpec:
    """``ShapesCNN(pooling=pooling)`` with the state dict at ``path``."""
    model = ShapesCNN(pooling=pooling)
    model.load_state_dict(load_state_dict(path))
    return ModelSpec(name=name, model=model.eval(), preprocess=PREPROCESS,
                     class_names=list(SHAPES_CLASSES), label_space="shapes",
                     weights_id=file_sha256(path), cam_layer="block3", multilabel=False,
                     weights_files=(str(path),))
