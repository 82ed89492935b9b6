"""``shapes_vit``: a small vision transformer for the synthetic ``shapes`` set, shipped
trained.

It is timm's ``VisionTransformer`` (Dosovitskiy et al., "An Image is Worth 16x16 Words",
ICLR 2021) in the paper's hybrid form (Sec. 3.1): the patch embedding reads the feature
maps of a convolutional network instead of raw pixels, as the paper's hybrids read a
pretrained ResNet's. Here that network is the bundled ``shapes_cnn``'s trunk
(``block1``-``block3``, 64 channels at 16x16), kept fixed at its trained weights; timm's
``HybridEmbed`` cuts it into 2x2 cells (a 2x2 convolution of stride 2 to width 48), so
each of the 64 patch tokens covers an 8x8-pixel cell of the 64x64 input. Then a class
token, 2 blocks of width 48 with 3 heads, and the class token's final embedding fed to
the linear ``head``. Methods that read timm ViT internals (``model.blocks[i].attn``)
work on it as on any timm ViT. A transformer trained from pixels at this size needs far
more than the few CPU minutes the bundled models may take (docs/data.md).

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
from faithbench.models.shapes_cnn import PREPROCESS, ShapesCNN
from faithbench.tokens import TokenLayout
from faithbench.types import ModelSpec

WEIGHTS = Path(__file__).parent / "weights" / "shapes_vit.pt"
DEPTH = 2
WIDTH = 48
CAM_LAYER = f"blocks.{DEPTH - 1}.norm1"


def trunk_of(cnn: ShapesCNN) -> nn.Sequential:
    """``shapes_cnn``'s convolutional trunk: [B,3,64,64] -> [B,64,16,16]."""
    return nn.Sequential(cnn.block1, cnn.block2, cnn.block3)


def build_shapes_vit(trunk: nn.Sequential | None = None) -> nn.Module:
    """The architecture, a timm ``VisionTransformer``: [B,3,64,64] -> logits [B,5].

    Args:
        trunk: the convolutional trunk to embed (default: an untrained ``shapes_cnn`` one).
    """
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    trunk = trunk if trunk is not None else trunk_of(ShapesCNN())
    return VisionTransformer(img_size=64, patch_size=2, num_classes=len(SHAPES_CLASSES),
                             embed_dim=WIDTH, depth=DEPTH, num_heads=WIDTH // 16,
                             mlp_ratio=2.0, global_pool="token", class_token=True,
                             embed_layer=partial(HybridEmbed, backbone=trunk))


@register(label_space="shapes")
def shapes_vit(checkpoint: str | None = None) -> ModelSpec:
    """The bundled shapes vision transformer (timm ``VisionTransformer``, hybrid).

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
                     weights_files=(str(path),),
                     token_layout=TokenLayout(prefix_tokens=1))
