"""Tiny stand-ins for TorchRay's VOC networks, for running the TorchRay presets end to
end in a test process: ``vgg16_voc`` / ``resnet50_voc`` are rebuilt as 8-channel VGG-like
networks with the same parameters (checkpoint, cam_layer, fully_convolutional), the same
preprocessing and label space. ``python -c "import preset_models; preset_models.main()"
-m experiment=...`` runs the real command line with them."""

from __future__ import annotations

import torch
from torch import nn

from faithbench import models
from faithbench.models._fully_conv import FullyConvVGG
from faithbench.models._label_names import VOC_CLASSES
from faithbench.models.torchray import CAFFE
from faithbench.registry import Entry
from faithbench.types import ModelSpec


class TinyVGG(nn.Module):
    """torchvision's VGG layout at 1/64 of the width: features reduce 224 to 7 (pools of
    4 and 8, ceil mode), a 7x7 adaptive pool, classifier Linear(8*7*7) - ReLU - Dropout -
    Linear - ReLU - Dropout - Linear(20). CAM layer ``features.4``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4, ceil_mode=True),
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(8, ceil_mode=True))
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(8 * 49, 16), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(16, 16), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(16, len(VOC_CLASSES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def tiny(name: str, seed: int):
    def build(checkpoint: str | None = None, cam_layer: str | None = None,
              fully_convolutional: bool = False) -> ModelSpec:
        torch.manual_seed(seed)
        model: nn.Module = TinyVGG()
        with torch.no_grad():  # inputs are Caffe-scaled (0-255): keep the logits small
            model.features[0].weight.mul_(1e-2)
        wid = f"tiny-{name}"
        if fully_convolutional:
            model, wid = FullyConvVGG(model), wid + "+fully_convolutional"
        return ModelSpec(name=name, model=model.eval(), preprocess=CAFFE, class_names=list(VOC_CLASSES),
                         label_space="voc", weights_id=wid, cam_layer=cam_layer or "features.4",
                         multilabel=True)
    return build


def install() -> None:
    """Replace the two VOC entries (their metadata kept) by tiny builders."""
    for i, name in enumerate(("vgg16_voc", "resnet50_voc")):
        info = models.get(name).info
        models.MODELS._entries[name] = Entry(name, tiny(name, i), info)


def main() -> None:
    from faithbench.cli import main as cli

    install()
    cli()
