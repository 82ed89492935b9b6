"""Machinery shared by the attention methods of ViT-style transformers: find the
transformer, capture every block's attention probabilities (and, for LeGrad, its output
tokens) in one forward, fuse heads, and map patch scores to the input pixels.

A ViT-style transformer here is a module with ``blocks`` whose ``blocks[i].attn`` is a
timm ``Attention`` (or a module of the same design: a ``fused_attn`` switch and an
``attn_drop`` applied to the softmax probabilities), ``num_prefix_tokens`` (class,
distillation and register tokens before the patch tokens) and ``patch_embed`` (its
``grid_size``, or ``dynamic_feat_size`` for dynamic image sizes): timm's
``VisionTransformer`` and its subclasses (DeiT, distilled DeiT, register tokens). The
model given may wrap one such transformer (a normalising wrapper, say).

timm computes attention with fused scaled-dot-product attention by default, which never
forms the probabilities; the capture switches every block to its explicit path while it
runs, then restores each switch and removes its hooks, exceptions included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench.errors import ConfigError, check_choice

HeadFusion = Literal["mean", "max", "min"]
HEAD_FUSIONS = ("mean", "max", "min")
Upsample = Literal["bilinear", "bicubic", "nearest"]
UPSAMPLES = ("bilinear", "bicubic", "nearest")

SUPPORTED = ("ViT-style transformers whose every block mixes all tokens in one attention "
             "matrix: timm VisionTransformer and subclasses (DeiT, distilled DeiT, register "
             "tokens), i.e. a module with blocks[i].attn (timm Attention), num_prefix_tokens "
             "and patch_embed. Not CNNs, and not windowed attention such as Swin's, where no "
             "single token-to-token matrix per block exists")


def _is_vit(m: nn.Module) -> bool:
    blocks = getattr(m, "blocks", None)
    return (isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) > 0
            and hasattr(m, "patch_embed") and isinstance(getattr(m, "num_prefix_tokens", None), int))


def find_vit(model: nn.Module) -> nn.Module:
    """The ViT-style transformer ``model`` is or wraps (exactly one), its blocks checked;
    else a ConfigError that says which models are supported."""
    found = [m for m in model.modules() if _is_vit(m)] if isinstance(model, nn.Module) else []
    if len(found) != 1:
        what = type(model).__name__ if len(found) == 0 else f"{len(found)} transformers in one model"
        raise ConfigError(f"attention methods need a ViT-style transformer; got {what}. "
                          f"Supported: {SUPPORTED}.")
    vit = found[0]
    for i, block in enumerate(vit.blocks):
        attn = getattr(block, "attn", None)
        if not (hasattr(attn, "fused_attn") and isinstance(getattr(attn, "attn_drop", None), nn.Module)):
            raise ConfigError(f"attention methods: block {i} of {type(vit).__name__} has no timm-style "
                              f"attention (blocks[{i}].attn with fused_attn and attn_drop), got "
                              f"{type(attn).__name__}. Supported: {SUPPORTED}.")
    return vit


def check_model(model: nn.Module) -> None:
    """``MethodInfo.check_model`` of the attention methods: a ConfigError for a model they
    cannot explain, before any run opens."""
    find_vit(model)


def class_token_index(vit: nn.Module) -> int:
    """Index of the class token (0 in timm); a ConfigError for a model without one."""
    if getattr(vit, "cls_token", None) is None:
        raise ConfigError(f"{type(vit).__name__} has no class token (cls_token is None, e.g. "
                          "class_token=False with average pooling): raw attention and the rollouts "
                          "read the class token's row; use legrad, which needs none")
    return 0


@dataclass
class Capture:
    attn: list[Tensor]  # per block [B,heads,N,N] softmax probabilities (or what `keep` made of them)
    tokens: list[Tensor]  # per block its output tokens [B,N,D] (only when asked for)
    logits: Tensor  # [B,K]
    vit: nn.Module
    grid: tuple[int, int]  # (gh, gw) patch tokens
    prefix: int  # tokens before the patch tokens


def token_grid(vit: nn.Module, size: tuple[int, int]) -> tuple[int, int]:
    """(gh, gw) of the patch tokens for an input of ``size`` (H, W)."""
    pe = vit.patch_embed
    if getattr(vit, "dynamic_img_size", False) and hasattr(pe, "dynamic_feat_size"):
        return tuple(int(v) for v in pe.dynamic_feat_size(size))  # type: ignore[return-value]
    return tuple(int(v) for v in pe.grid_size)  # type: ignore[return-value]


@contextmanager
def _explicit_attention(vit: nn.Module) -> Iterator[None]:
    """Every block on timm's explicit (unfused) attention path while the block runs."""
    attns = [b.attn for b in vit.blocks]
    saved = [(a, "fused_attn" in vars(a), a.fused_attn) for a in attns]
    try:
        for a in attns:
            a.fused_attn = False
        yield
    finally:
        for a, own, value in saved:
            if own:
                a.fused_attn = value
            else:
                del a.fused_attn


def capture(model: nn.Module, x: Tensor, grad: bool, tokens: bool = False,
            keep: Callable[[Tensor], Tensor] | None = None) -> Capture:
    """Forward ``x`` once and capture every block's attention probabilities.

    Args:
        x: [B,3,H,W].
        grad: build the graph (the input is made a leaf that requires grad, so that the
            attention maps are in it even when the parameters are frozen).
        tokens: also capture every block's output tokens.
        keep: applied to each block's probabilities as they are made (detached when not
            ``grad``), e.g. a head fusion that spares the memory of the heads.
    """
    vit = find_vit(model)
    for i, b in enumerate(vit.blocks):
        drop = b.attn.attn_drop
        if drop.training and getattr(drop, "p", 0) > 0:
            raise ConfigError(f"block {i} has active attention dropout (p={drop.p}, training mode); "
                              "explain the model in eval mode")
    store: list[list[Tensor]] = [[] for _ in vit.blocks]
    outs: list[list[Tensor]] = [[] for _ in vit.blocks]

    def on_attn(i: int) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: object, out: Tensor) -> None:
            a = out if grad else out.detach()
            store[i].append(keep(a) if keep else a)
        return hook

    def on_block(i: int) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: object, out: Tensor) -> None:
            outs[i].append(out)
        return hook

    handles = []
    try:
        with _explicit_attention(vit), torch.set_grad_enabled(grad):
            for i, b in enumerate(vit.blocks):
                handles.append(b.attn.attn_drop.register_forward_hook(on_attn(i)))
                if tokens:
                    handles.append(b.register_forward_hook(on_block(i)))
            logits = model(x.detach().requires_grad_(grad))
    finally:
        for h in handles:
            h.remove()
    if any(len(s) != 1 for s in store):
        raise ConfigError("attention methods: each block's attention must run exactly once per "
                          f"forward; ran {[len(s) for s in store]} times")
    grid, prefix = token_grid(vit, tuple(x.shape[-2:])), int(vit.num_prefix_tokens)
    n = store[0][0].shape[-1]
    if n != prefix + grid[0] * grid[1]:
        raise ConfigError(f"attention over {n} tokens does not match {prefix} prefix tokens and a "
                          f"{grid[0]}x{grid[1]} patch grid")
    return Capture([s[0] for s in store], [o[0] for o in outs] if tokens else [], logits, vit,
                   grid, prefix)


def fuse_heads(attn: Tensor, how: str) -> Tensor:
    """[B,heads,N,N] -> [B,N,N]: the mean, max or min over heads (Abnar & Zuidema average)."""
    check_choice("head_fusion", how, HEAD_FUSIONS)
    if how == "mean":
        return attn.mean(1)
    return attn.amax(1) if how == "max" else attn.amin(1)


def check_block(index: int, n_blocks: int, name: str) -> int:
    """``index`` (negative counts from the end) as 0..n_blocks-1, or a ConfigError."""
    if not -n_blocks <= index < n_blocks:
        raise ConfigError(f"{name}={index} is out of range for a model with {n_blocks} blocks; "
                          f"valid: {-n_blocks}..{n_blocks - 1}")
    return index % n_blocks


def to_input(scores: Tensor, c: Capture, size: tuple[int, int], mode: str) -> Tensor:
    """Patch-token scores [B, gh*gw] -> [B,H,W] float32 on the input pixels.

    The grid is interpolated (``align_corners=False``) onto the pixels its patches cover,
    gh*ph x gw*pw (as the reference codes' ``interpolate(scale_factor=patch)``); where
    that differs from H x W (dynamic sizes), the padding beyond the image is cut off, or
    the rows and columns the patch grid left out repeat the last ones.
    """
    check_choice("upsample", mode, UPSAMPLES)
    maps = scores.float().reshape(scores.shape[0], 1, *c.grid)
    ratio = getattr(c.vit.patch_embed, "feat_ratio", None)
    cover = tuple(g * p for g, p in zip(c.grid, ratio(as_scalar=False))) if ratio else size
    opts = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(maps, size=cover, mode=mode, **opts)[..., : size[0], : size[1]]
    pad_h, pad_w = size[0] - out.shape[-2], size[1] - out.shape[-1]
    if pad_h or pad_w:
        out = F.pad(out, (0, pad_w, 0, pad_h), mode="replicate")
    return out[:, 0]
