"""Theoretical receptive fields of a layer's units, traced through the forward pass.

The recurrences of Araujo, Norris & Sim ("Computing Receptive Fields of Convolutional
Neural Networks", Distill 2019, Eq. 1-3 per layer): with effective kernel
``k' = d (k - 1) + 1``, stride ``s`` and left padding ``p``, a chain updates the field
size ``r += (k' - 1) j``, the first unit's left edge ``a -= p j`` and the jump ``j *= s``.

The chain is the sequence of conv / pooling modules met in execution order whose input
has the spatial size of the current map; modules fed a map of another size (a
residual shortcut that runs after its block's main path, squeeze-excitation on a 1x1
map) are side branches and left out: shortcuts do not widen the field, and global
context is not a local field. TF "SAME" padding (timm's ``*Same`` modules) is computed
from the input size as TensorFlow does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.visualize._layers import _Stop, module

_GEOMETRIC = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class Field:
    """Unit (i, j) of the layer sees input rows ``start[0] + i * jump[0]`` up to (not
    including) that plus ``size[0]``, and likewise columns; edges may lie outside the
    image (there the layer saw padding)."""

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[int, int]

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of unit (y, x), bottom/right exclusive, unclipped."""
        t, l = self.start[0] + y * self.jump[0], self.start[1] + x * self.jump[1]
        return t, l, t + self.size[0], l + self.size[1]


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _left_pad(m: nn.Module, axis: int, n_in: int, n_out: int, ke: int, s: int) -> int:
    """Left padding along ``axis`` that produced ``n_out`` from ``n_in``; checked."""
    ceil = bool(getattr(m, "ceil_mode", False))
    if type(m).__name__.endswith("Same"):  # timm's dynamic TF "SAME" padding
        total = max((math.ceil(n_in / s) - 1) * s + ke - n_in, 0)
        left, expect = total // 2, math.ceil(n_in / s)
    elif isinstance(getattr(m, "padding", 0), str):
        left = (ke - 1) // 2 if m.padding == "same" else 0
        expect = n_in if m.padding == "same" else (n_in - ke) // s + 1
    else:
        left = _pair(m.padding)[axis]
        span = n_in + 2 * left - ke
        expect = (math.ceil(span / s) if ceil else span // s) + 1
    if expect != n_out:
        raise ConfigError(f"cannot trace the receptive field through {type(m).__name__} "
                          f"({n_in} -> {n_out} pixels along axis {axis})")
    return left


def receptive_field(model: nn.Module, layer: str, size: tuple[int, int]) -> Field:
    """The receptive field of ``layer``'s units for inputs of ``size`` (H, W).

    Args:
        model: a CNN (any device); layer: dotted module name; size: input (H, W).

    Returns:
        The layer's ``Field`` (one zero image is run through the model to find it).
    """
    cur = list(size)
    r, j, a = [1, 1], [1, 1], [0, 0]
    state: dict[str, tuple[int, int] | None] = {"out": None}
    target = module(model, layer)

    def leaf_hook(m: nn.Module, args: tuple, out: object) -> None:
        if state["out"] is not None or not args or not isinstance(args[0], Tensor) \
                or args[0].dim() != 4 or not isinstance(out, Tensor) or out.dim() != 4:
            return
        n_in, n_out = list(args[0].shape[-2:]), list(out.shape[-2:])
        if n_in != cur:
            return  # a side branch (see the module docstring)
        if isinstance(m, _GEOMETRIC):
            k, s = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
            d = _pair(getattr(m, "dilation", 1))
            for ax in (0, 1):
                ke = d[ax] * (k[ax] - 1) + 1
                p = _left_pad(m, ax, n_in[ax], n_out[ax], ke, s[ax])
                r[ax] += (ke - 1) * j[ax]
                a[ax] -= p * j[ax]
                j[ax] *= s[ax]
                cur[ax] = n_out[ax]
        elif n_out != n_in:
            raise ConfigError(f"cannot trace the receptive field through {type(m).__name__}, "
                              f"which changes the map size {tuple(n_in)} -> {tuple(n_out)}")

    def target_hook(_m: nn.Module, _a: tuple, out: object) -> None:
        if state["out"] is None:
            state["out"] = tuple(out.shape[-2:]) if isinstance(out, Tensor) else ()
            raise _Stop

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(leaf_hook) for m in leaves]
    handles.append(target.register_forward_hook(target_hook))  # after its own leaf hook
    p = next(model.parameters(), None)
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *size, device=p.device if p is not None else "cpu"))
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    if state["out"] != tuple(cur):
        raise ConfigError(f"layer {layer!r} outputs {state['out']} maps but the traced "
                          f"chain ends at {tuple(cur)}: its receptive field is not a "
                          "conv/pool chain this tracer can follow")
    return Field((r[0], r[1]), (j[0], j[1]), (a[0], a[1]))


def crop(image: Tensor, field: Field, y: int, x: int, fill: float = 0.5) -> Tensor:
    """The receptive field of unit (y, x) cut out of ``image`` [C,H,W]; parts outside
    the image are ``fill``. Returns [C, size_h, size_w]."""
    t, l, b, rt = field.box(y, x)
    h, w = image.shape[-2:]
    out = image.new_full((image.shape[0], b - t, rt - l), fill)
    t0, l0, b0, r0 = max(t, 0), max(l, 0), min(b, h), min(rt, w)
    if b0 > t0 and r0 > l0:
        out[:, t0 - t : b0 - t, l0 - l : r0 - l] = image[:, t0:b0, l0:r0]
    return out
