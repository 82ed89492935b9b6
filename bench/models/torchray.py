"""The pointing-game models of Zhang et al. (Excitation Backprop, ECCV 2016) as
distributed by TorchRay: VGG16 and ResNet50 fine-tuned on VOC 2007 (20 classes) and
COCO 2014 (80 classes), converted from Caffe. Entries ``vgg16_voc``, ``vgg16_coco``,
``resnet50_voc``, ``resnet50_coco``; each needs ``checkpoint=`` the user's file
(``vgg16_voc-b050e8c3.pth.tar`` etc.).

Checkpoint layout (read from TorchRay's ``benchmark/models.py``; our fixtures follow it):

- VGG16: torchvision ``vgg16`` keys for ``features.*``; the classifier without dropout
  slots, ``classifier.{0,2,4}`` (torchvision's ``{0,3,6}``), weights possibly in Caffe's
  conv shape ([4096, 512, 7, 7]); ``features.0`` in BGR channel order.
- ResNet50: torchvision ``resnet50`` keys, but each BatchNorm split Caffe-style into
  ``bnN.0.{running_mean,running_var}`` and ``bnN.1.{weight,bias}`` (likewise
  ``downsample.1.{0,1}.*``); ``conv1`` has a bias; stride in each stage's first 1x1 conv
  (Caffe ResNet v1), stem max-pool without padding; ``conv1`` in BGR order.

Weights are kept in BGR order and fed BGR input (TorchRay instead flips ``conv1`` and
feeds RGB: the same function). Max-pools use ceil mode. Preprocessing: 0-255 pixels,
Caffe mean [103.939, 116.779, 123.68] (BGR), std 1, shorter side 224, no crop.
``fully_convolutional=True`` builds the networks TorchRay's pointing benchmark runs
(see ``_fully_conv``): on non-square inputs their logits are a log-sum-exp over a class
score map instead of a 7x7 adaptive pool.

``checkpoint`` is the file, or a folder holding it under TorchRay's name
(``vgg16_voc-b050e8c3.pth.tar`` ...); null looks in torch hub's cache
(``$TORCH_HOME/hub/checkpoints``), where TorchRay's own download puts it.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor, nn

from faithbench.checkpoint import load_state_dict
from faithbench.errors import ConfigError
from faithbench.models import register
from faithbench.models._cam import check_layer
from faithbench.models._fully_conv import FullyConvResNet, FullyConvVGG
from faithbench.models._weights import tensors_sha256
from faithbench.labels import COCO_CLASSES, VOC_CLASSES
from faithbench.preprocess import Preprocess
from faithbench.types import ModelSpec

URL = "https://dl.fbaipublicfiles.com/torchray/"
FILES = {"vgg16_voc": "vgg16_voc-b050e8c3.pth.tar", "vgg16_coco": "vgg16_coco-d82c8150.pth.tar",
         "resnet50_voc": "resnet50_voc-9ca920d6.pth.tar",
         "resnet50_coco": "resnet50_coco-e99468c5.pth.tar"}
CAFFE = Preprocess(size=224, resize="shorter_side", interpolation="bilinear",
                   mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0), bgr=True,
                   pixel_scale=255.0)


def caffe_vgg16(num_classes: int) -> nn.Module:
    import torchvision

    model = torchvision.models.vgg16(num_classes=num_classes)
    for m in model.modules():
        if isinstance(m, nn.MaxPool2d):
            m.ceil_mode = True
    return model


def caffe_resnet50(num_classes: int) -> nn.Module:
    import torchvision

    model = torchvision.models.resnet50(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True)
    model.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
    for stage in (model.layer2, model.layer3, model.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    return model


def vgg16_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """TorchRay VGG16 layout -> torchvision names and Linear shapes."""
    remap = {"classifier.2": "classifier.3", "classifier.4": "classifier.6"}
    out = {}
    for k, v in state.items():
        head, _, leaf = k.rpartition(".")
        k = f"{remap.get(head, head)}.{leaf}"
        if k.startswith("classifier") and leaf == "weight":
            v = v.reshape(v.shape[0], -1)
        out[k] = v
    return out


def resnet50_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """TorchRay ResNet50 layout (Caffe BatchNorm + Scale pairs) -> torchvision names."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"(bn\d)\.[01]\.", r"\1.", k)
        k = re.sub(r"(downsample\.1)\.[01]\.", r"\1.", k)
        out[k] = v
    return out


def _load(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    # Converted Caffe files carry no BatchNorm step counters: fill them in.
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            state.setdefault(f"{name}.num_batches_tracked", m.num_batches_tracked)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"checkpoint {str(path)!r} does not have the TorchRay layout this "
                          f"model expects: {str(e).splitlines()[0]} ...") from None


def find_checkpoint(name: str, checkpoint: str | None) -> Path:
    """The checkpoint file of model ``name``: ``checkpoint`` itself, TorchRay's file name
    inside the folder ``checkpoint``, or (null) that name in torch hub's cache."""
    import torch

    hub = Path(torch.hub.get_dir()) / "checkpoints" / FILES[name]
    path = Path(checkpoint).expanduser() if checkpoint else hub
    if path.is_dir():
        path = path / FILES[name]
    if not path.is_file():
        raise ConfigError(f"{name} needs model.checkpoint=/path/to/{FILES[name]} (or its folder): "
                          f"TorchRay's pointing-game checkpoint {URL}{FILES[name]}, not shipped "
                          f"or downloaded; {str(path)!r} does not exist (by default it is "
                          f"looked for in torch hub's cache, {hub.parent})")
    return path


def _build(arch: str, dataset: str, checkpoint: str | None, cam_layer: str | None,
           fully_convolutional: bool = False) -> ModelSpec:
    name = f"{arch}_{dataset}"
    path = find_checkpoint(name, checkpoint)
    raw = load_state_dict(path)
    classes = VOC_CLASSES if dataset == "voc" else COCO_CLASSES
    if arch == "vgg16":
        model, state, default = caffe_vgg16(len(classes)), vgg16_keys(raw), "features.29"
    else:
        model, state, default = caffe_resnet50(len(classes)), resnet50_keys(raw), "layer4"
    _load(model, state, path)
    weights_id = tensors_sha256(raw)
    if fully_convolutional:  # another function of the same weights: its own cache identity
        model = FullyConvVGG(model) if arch == "vgg16" else FullyConvResNet(model)
        weights_id += "+fully_convolutional"
    # The benchmark scores each class present independently: sigmoid outputs.
    return ModelSpec(name=name, model=model.eval(), preprocess=CAFFE, class_names=list(classes),
                     label_space=dataset, weights_id=weights_id, weights_files=(str(path),),
                     cam_layer=check_layer(model, cam_layer or default), multilabel=True)


@register(label_space="voc")
def vgg16_voc(checkpoint: str | None = None, cam_layer: str | None = None,
              fully_convolutional: bool = False) -> ModelSpec:
    """VGG16 fine-tuned on VOC 2007 (TorchRay ``vgg16_voc-b050e8c3.pth.tar``)."""
    return _build("vgg16", "voc", checkpoint, cam_layer, fully_convolutional)


@register(label_space="coco")
def vgg16_coco(checkpoint: str | None = None, cam_layer: str | None = None,
               fully_convolutional: bool = False) -> ModelSpec:
    """VGG16 fine-tuned on COCO 2014 (TorchRay ``vgg16_coco-d82c8150.pth.tar``)."""
    return _build("vgg16", "coco", checkpoint, cam_layer, fully_convolutional)


@register(label_space="voc")
def resnet50_voc(checkpoint: str | None = None, cam_layer: str | None = None,
                 fully_convolutional: bool = False) -> ModelSpec:
    """ResNet50 fine-tuned on VOC 2007 (TorchRay ``resnet50_voc-9ca920d6.pth.tar``)."""
    return _build("resnet50", "voc", checkpoint, cam_layer, fully_convolutional)


@register(label_space="coco")
def resnet50_coco(checkpoint: str | None = None, cam_layer: str | None = None,
                  fully_convolutional: bool = False) -> ModelSpec:
    """ResNet50 fine-tuned on COCO 2014 (TorchRay ``resnet50_coco-e99468c5.pth.tar``)."""
    return _build("resnet50", "coco", checkpoint, cam_layer, fully_convolutional)
