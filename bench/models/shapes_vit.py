"""``shapes_vit``: a small vision transformer for the synthetic ``shapes`` set, shipped
trained.

It is timm's ``VisionTransformer`` (Dosovitskiy et al., "An Image is Worth 16x16 Words",
ICLR 2021) at a small size, with a convolutional patch embedding (the paper's hybrid
model, Sec. 3.1, in the form of Xiao et al., "Early Convolutions Help Transformers See
Better", NeurIPS 2021: three 3x3 convolutions of stride 2 with BatchNorm and ReLU, then
timm's ``HybridEmbed`` 1x1 projection), so that it trains on two CPU cores in minutes.
Each token sees an 8x8-pixel cell: an 8x8 grid of 64 patch tokens at the 64x64 input,
one class token, 2 blocks of width 32 with 2 heads, and the class token's final
embedding fed to the linear ``head``. Methods that read timm ViT internals
(``model.blocks[i].attn``) work on it as on any timm ViT.

CAM layer: ``blocks.1.norm1``, the input of the last block's attention, as
pytorch-grad-cam documents for ViTs (the last block's output reaches the logits only
through the class token, so its patch tokens have zero gradient). Token layout: one
prefix token (the class token) dropped, the 64 patch tokens read as an 8x8 grid
(``faithbench.tokens``). Weights: ``weights/shapes_vit.pt`` (a state dict), made by
``scripts/train_shapes_vit.py``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from torch import nn

from faithbench.checkpoint import load_state_dict
from faithbench.labels import SHAPES_CLASSES
from faithbench.models import register
from faithbench.models._weights import file_sha256
from faithbench.models.shapes_cnn import PREPROCESS
from faithbench.tokens import TokenLayout
from faithbench.types import ModelSpec

WEIGHTS = Path(__file__).parent / "weights" / "shapes_vit.pt"
DEPTH = 2
WIDTH = 32
CAM_LAYER = f"blocks.{DEPTH - 1}.norm1"


def _stem() -> nn.Sequential:
    """Three 3x3 convolutions of stride 2 (64 -> 32 -> 16 -> 8), BatchNorm, ReLU."""
    layers: list[nn.Module] = []
    for cin, cout in ((3, 16), (16, 32), (32, WIDTH)):
        layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers)


def build_shapes_vit() -> nn.Module:
    """The untrained architecture, a timm ``VisionTransformer``: [B,3,64,64] -> logits [B,5]."""
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=64, patch_size=1, num_classes=len(SHAPES_CLASSES),
                             embed_dim=WIDTH, depth=DEPTH, num_heads=2, mlp_ratio=2.0,
                             global_pool="token", class_token=True,
                             embed_layer=partial(HybridEmbed, backbone=_stem()))


@register(label_space="shapes")
def shapes_vit(checkpoint: str | None = None) -> ModelSpec:
    """The bundled shapes vision transformer (timm ``VisionTransformer``).

    Args:
        checkpoint: optional path to another state dict of the same architecture; the
            bundled ``weights/shapes_vit.pt`` by default.
    """
    path = Path(checkpoint).expanduser() if checkpoint else WEIGHTS
    model = build_shapes_vit()
    model.load_state_dict(load_state_dict(path))
    return ModelSpec(name="shapes_vit", model=model.eval(), preprocess=PREPROCESS,
                     class_names=list(SHAPES_CLASSES), label_space="shapes",
                     weights_id=file_sha256(path), cam_layer=CAM_LAYER, multilabel=False,
                     token_layout=TokenLayout(prefix_tokens=1))
