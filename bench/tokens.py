"""Token layouts: how a transformer layer's output is read as a feature map ``[B,C,h,w]``
for the CAM family, and written back.

CNN layers output ``[B,C,h,w]`` and need no layout. A vision transformer's blocks output
tokens ``[B,N,C]``: ``prefix_tokens`` leading tokens that are not image patches (the class
token, DeiT's distillation token, register tokens; Dosovitskiy et al. ICLR 2021, Touvron
et al. ICML 2021, Darcet et al. ICLR 2024) and then the patch tokens in raster order, read
as an ``h x w`` grid with the input's aspect ratio. Swin (Liu et al., ICCV 2021) keeps its
stages channels-last, ``[B,h,w,C]``. This is the reshape that pytorch-grad-cam's
``reshape_transform`` examples do for ViT and Swin, made a property of the model so that
every CAM method applies it, in both directions: methods that edit the layer's output
(Ablation-CAM) edit the grid, and the prefix tokens go back unchanged.

A model carries its layout: timm's transformers are recognised by their own attributes
(``num_prefix_tokens`` with a ``patch_embed``; ``output_fmt == "NHWC"`` with a
``patch_embed`` for Swin), also inside a wrapper; any other module can be given one with :func:`set_token_layout` (``faithbench.from_module``
does so for its ``token_layout`` argument).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError

_ATTR = "faithbench_token_layout"


@dataclass(frozen=True)
class TokenLayout:
    """How a model's token outputs map to ``[B,C,h,w]``.

    Attributes:
        prefix_tokens: leading non-patch tokens of a ``[B,N,C]`` output, dropped from the
            map (1 for a ViT's class token, 2 for distilled DeiT, 1 + registers).
        channels_last: 4-D outputs are ``[B,h,w,C]`` (Swin's stages), except those of
            convolutions (the patch embedding's projection), which stay ``[B,C,h,w]``.
    """

    prefix_tokens: int = 0
    channels_last: bool = False

    def __post_init__(self) -> None:
        if int(self.prefix_tokens) < 0:
            raise ConfigError(f"token layout: prefix_tokens={self.prefix_tokens} must be >= 0")

    def to_map(self, out: Tensor, size: tuple[int, int], module: nn.Module | None = None) -> Tensor:
        """The ``[B,C,h,w]`` map of a layer output ``out`` at an input of ``size`` (H, W).

        ``[B,N,C]`` tokens: the prefix dropped, the rest a grid of the input's aspect
        ratio. ``[B,h,w,C]`` (``channels_last``, not a convolution): permuted. Other
        4-D outputs are returned as they are."""
        if out.dim() == 3:
            b, n, c = out.shape
            h, w = grid(n - self.prefix_tokens, size)
            return out[:, self.prefix_tokens:].reshape(b, h, w, c).permute(0, 3, 1, 2)
        if out.dim() == 4 and self.channels_last and not isinstance(module, nn.Conv2d):
            return out.permute(0, 3, 1, 2)
        if out.dim() == 4:
            return out
        raise ConfigError(f"CAM layer must output a [B,C,h,w] map or [B,N,C] tokens, "
                          f"got {tuple(out.shape)}")

    def from_map(self, fmap: Tensor, out: Tensor, module: nn.Module | None = None) -> Tensor:
        """The layer output for an edited map ``fmap`` [B,C,h,w]: the inverse of
        :meth:`to_map`, with ``out``'s prefix tokens put back in front."""
        if out.dim() == 3:
            tokens = fmap.flatten(2).transpose(1, 2)
            return torch.cat([out[:, :self.prefix_tokens].to(tokens.dtype), tokens], 1)
        if self.channels_last and not isinstance(module, nn.Conv2d):
            return fmap.permute(0, 2, 3, 1).contiguous()
        return fmap


def grid(n: int, size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) with h * w = ``n`` patches laid over an input of ``size`` (H, W) at one
    stride: h = round(H / s), w = round(W / s), s = sqrt(H W / n)."""
    height, width = size
    if n <= 0:
        raise ConfigError(f"token layout: {n} patch tokens left after the prefix")
    s = math.sqrt(height * width / n)
    h, w = max(round(height / s), 1), max(round(width / s), 1)
    if h * w != n:
        raise ConfigError(f"token layout: {n} patch tokens do not tile a {height}x{width} "
                          "input on a square grid; check prefix_tokens")
    return h, w


def set_token_layout(model: nn.Module, layout: TokenLayout | None) -> None:
    """Give ``model`` an explicit layout (None removes it); :func:`token_layout` reads it
    before recognising timm models."""
    if layout is None:
        if hasattr(model, _ATTR):
            delattr(model, _ATTR)
        return
    if not isinstance(layout, TokenLayout):
        raise ConfigError(f"token_layout={layout!r} must be a faithbench TokenLayout")
    object.__setattr__(model, _ATTR, layout)


def token_layout(model: nn.Module) -> TokenLayout | None:
    """The layout of ``model``: set explicitly, else that of a timm transformer (ViT,
    DeiT, ViT with registers and other ``num_prefix_tokens`` models; Swin), else None
    (a CNN: layers output ``[B,C,h,w]``). A model that wraps one (a normalising
    ``Sequential``) has the layout of the first sub-module that has one."""
    for m in model.modules():
        explicit = getattr(m, _ATTR, None)
        if explicit is not None:
            return explicit
        if getattr(m, "output_fmt", None) == "NHWC" and hasattr(m, "patch_embed"):
            return TokenLayout(channels_last=True)
        prefix = getattr(m, "num_prefix_tokens", None)
        if isinstance(prefix, int) and hasattr(m, "patch_embed"):
            return TokenLayout(prefix_tokens=prefix)
    return None
