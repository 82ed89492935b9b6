"""Layers by dotted name: lookup, activation capture through hooks, default choices."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError, unknown_choice


def module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (dotted, as ``named_modules``); a ConfigError lists
    the close names and the top-level ones."""
    mods = dict(model.named_modules())
    if name not in mods:
        err = unknown_choice("layer", name, [n for n in mods if n])
        raise ConfigError(str(err).split(" Valid choices:")[0] + " Top-level modules: "
                          + ", ".join(n for n, _ in model.named_children()) + ".")
    return mods[name]


def first_conv(model: nn.Module) -> str:
    """Name of the first ``nn.Conv2d`` in registration order (the stem of every common
    architecture)."""
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return n
    raise ConfigError(f"{type(model).__name__} has no nn.Conv2d layer to draw")


def last_linear(model: nn.Module) -> str:
    """Name of the last ``nn.Linear`` (the classifier whose input is the penultimate
    representation)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear classifier; set the layer")
    return names[-1]


class _Stop(Exception):
    """Raised from a hook to end a forward once every wanted output is captured."""


def capture(model: nn.Module, x: Tensor, layers: Sequence[str], inputs: bool = False,
            stop: bool = True) -> dict[str, Tensor]:
    """Outputs (or, with ``inputs``, first inputs) of ``layers`` for ``x``.

    Gradients flow through the returned tensors when ``x`` requires grad. With ``stop``
    the forward ends as soon as all of them are captured, which spares the later layers
    in optimisation loops on early layers. A module that runs twice keeps its first
    output. Hooks are removed before returning.

    Args:
        model: any module; x: its input [B,3,H,W]; layers: dotted module names.

    Returns:
        {name: tensor} for every name in ``layers``.
    """
    wanted = list(dict.fromkeys(layers))
    out: dict[str, Tensor] = {}

    def hook(name: str):
        def fn(_m: nn.Module, args: tuple, result: Tensor) -> None:
            if name not in out:
                out[name] = args[0] if inputs else result
            if stop and len(out) == len(wanted):
                raise _Stop

        return fn

    handles = [module(model, n).register_forward_hook(hook(n)) for n in wanted]
    try:
        model(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in wanted if n not in out]
    if missing:
        raise ConfigError(f"layer {missing[0]!r} did not run in the forward pass")
    return out


def stage_layers(model: nn.Module, size: tuple[int, int]) -> list[str]:
    """One layer per feature-map resolution, from fine to coarse: at each spatial size
    (above 1x1), the last module to finish among the least nested ones that output it
    (``block1``, ``block3`` for shapes_cnn; ``bn1``, ``blocks.1``, ``blocks.2``,
    ``blocks.4``, ``bn2`` for EfficientNet-Lite0 at 224). Used as default layers where
    the papers take one layer per stage (Gatys et al.'s conv1_1 ... conv5_1).

    Args:
        model: a CNN; size: the input (H, W) probed with one zero image.
    """
    done: list[tuple[str, tuple[int, int]]] = []

    def hook(name: str):
        def fn(_m: nn.Module, _a: tuple, result: object) -> None:
            if isinstance(result, Tensor) and result.dim() == 4 and result.shape[-2:].numel() > 1:
                done.append((name, tuple(result.shape[-2:])))

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    p = next(model.parameters(), None)
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *size, device=p.device if p is not None else "cpu"))
    finally:
        for h in handles:
            h.remove()
    stages: list[str] = []
    for res in dict.fromkeys(r for _, r in done):
        cands = [n for n, r in done if r == res]
        depth = min(n.count(".") for n in cands)
        stages.append([n for n in cands if n.count(".") == depth][-1])
    return stages
