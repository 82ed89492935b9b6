"""Fully convolutional VGG / ResNet classifiers, as TorchRay runs its pointing game
(``get_model(..., convert_to_fully_convolutional=True)`` in ``torchray/benchmark/models.py``).

On an input of any size the head gives a class score map s [B,K,h,w] (VGG: the
classifier's Linear layers as convolutions on the un-pooled features, the first one
7x7; ResNet: a 7x7 stride-1 average pool, then the classifier as a 1x1 convolution).
TorchRay back-propagates from that map the gradient g = exp(s) / sum exp(s) over
positions (``get_pointing_gradient``), which is the gradient of the spatial
log-sum-exp. So these models return ``logsumexp(s)`` over positions as the logits
[B,K]: every gradient, Grad-CAM and guided / deconvnet map equals TorchRay's, and where
the map is 1x1 (224x224 inputs: RISE's) the logits are the ordinary ones.
"""

from __future__ import annotations

from torch import Tensor, nn


def _conv_from_linear(lin: nn.Linear, k: int) -> nn.Conv2d:
    """The k x k convolution computing ``lin`` on a flattened [C,k,k] window."""
    out_ch, in_features = lin.weight.shape
    conv = nn.Conv2d(in_features // (k * k), out_ch, k, bias=lin.bias is not None)
    conv.weight.data.copy_(lin.weight.data.view(conv.weight.shape))
    if lin.bias is not None:
        conv.bias.data.copy_(lin.bias.data)
    return conv.to(lin.weight.device)


def spatial_logsumexp(s: Tensor) -> Tensor:
    """[B,K,h,w] score map -> [B,K]: log sum_ij exp(s_ij) (the identity when h = w = 1)."""
    return s.flatten(2).logsumexp(2)


class FullyConvVGG(nn.Module):
    """A torchvision VGG without its 7x7 adaptive pool, the classifier as convolutions.
    Module names stay (``features.29``, ``classifier.0``), so CAM layers carry over."""

    def __init__(self, vgg: nn.Module) -> None:
        super().__init__()
        self.features = vgg.features
        layers, first = [], True
        for m in vgg.classifier:
            if isinstance(m, nn.Linear):
                m, first = _conv_from_linear(m, 7 if first else 1), False
            layers.append(m)
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return spatial_logsumexp(self.classifier(self.features(x)))


class FullyConvResNet(nn.Module):
    """A torchvision ResNet with a 7x7 stride-1 average pool (TorchRay's pointing setup)
    and ``fc`` as a 1x1 convolution; module names stay (``layer4``)."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.fc = _conv_from_linear(resnet.fc, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return spatial_logsumexp(self.fc(self.avgpool(x)))
