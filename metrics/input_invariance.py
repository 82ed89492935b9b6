"""Input invariance (Kindermans et al., "The (un)reliability of saliency methods", 2017,
Sec. 2): a constant shift of the input, absorbed by the first layer's bias, leaves the
model's function unchanged, so a map that depends only on the function should not change
either."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError, unknown_choice
from faithbench.metrics import register
from faithbench.metrics._common import Explain, clean, nan_where, need_explain
from faithbench.params import Positive
from faithbench.types import Batch

# modules that only reshape or pass the input on: the shift reaches the next layer as is
_TRANSPARENT = (nn.Flatten, nn.Identity, nn.Dropout)


def first_layer(model: nn.Module, x: Tensor, layer: str | None) -> str:
    """Name of the module that first transforms the input: ``layer`` when given, else the
    first leaf module that one forward of ``x[:1]`` calls, past reshaping ones."""
    names = dict(model.named_modules())
    if layer is not None:
        if layer not in names:
            raise unknown_choice("layer", layer, [n for n in names if n])
        return layer
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: order.append(n))
             for n, m in names.items() if n and not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for hk in hooks:
            hk.remove()
    first = next((n for n in order if not isinstance(names[n], _TRANSPARENT)), None)
    if first is None:
        raise ConfigError("input_invariance: the model calls no layer on its input")
    return first


def shifted_model(model: nn.Module, x: Tensor, shift: float, layer: str | None = None) -> nn.Module:
    """A copy of ``model`` with ``m(x + shift) == model(x)``: the first layer's bias
    becomes ``b - shift * sum(W)`` (Kindermans et al. Sec. 2). Where a convolution pads
    (zero padding, timm's dynamic "same" padding), border outputs see fewer taps of the
    shift than ``sum(W)``; a forward hook adds back that border difference (zero inside
    the image), so the equality is exact there too. ``model`` is not modified."""
    m = copy.deepcopy(model)
    name = first_layer(m, x, layer)
    mod = m.get_submodule(name)
    if not isinstance(mod, (nn.Conv2d, nn.Linear)):
        raise ConfigError(f"input_invariance: first layer {name!r} is a {type(mod).__name__}; "
                          "valid: Conv2d or Linear (set input_layer=<module name> if it is not the first)")
    w = mod.weight.detach()
    absorbed = w.sum(tuple(range(1, w.dim()))) * shift
    with torch.no_grad():
        if mod.bias is None:
            mod.bias = nn.Parameter(torch.zeros(w.shape[0], dtype=w.dtype, device=w.device))
        mod.bias -= absorbed
    if isinstance(mod, nn.Conv2d):
        mod.register_forward_hook(_border_fix(absorbed, shift))
    return m


def _border_fix(absorbed: Tensor, shift: float) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], Tensor]:
    """Forward hook: output + ``shift * sum(W) - L(shift)``, ``L(shift)`` the layer's
    response to a constant ``shift`` image without its bias (``forward`` called directly,
    so no hook runs again); cached per input shape."""
    cache: dict[tuple, Tensor] = {}

    def hook(mod: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> Tensor:
        z = args[0]
        key = (tuple(z.shape[1:]), z.dtype, z.device)
        if key not in cache:
            with torch.no_grad():
                zero = torch.zeros((1, *z.shape[1:]), dtype=z.dtype, device=z.device)
                taps = mod.forward(zero + shift) - mod.forward(zero)
                cache[key] = absorbed.view(-1, 1, 1).to(taps.dtype) - taps
        return out + cache[key].to(out.dtype)
    return hook


@register(higher_is_better=False, context=("explain",), outputs={"input_invariance_holds": True})
def input_invariance(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                     batch: Batch | None = None, explain: Explain | None = None,
                     shift: float = -1.0, input_layer: str | None = None,
                     atol: Positive = 1e-4) -> dict[str, Tensor]:
    """Input invariance (Kindermans et al. 2017): explain ``x + shift`` on the model whose
    first layer absorbs the shift (``shifted_model``: the same function of the unshifted
    input) and compare with the map of ``x``. Lower is better.

    Args:
        x: [B,C,H,W] normalised input; heatmap: [B,H,W] the map of ``x``; target: [B].
        explain: ``explain(x, target, model=m) -> [B,H,W]``, the method being evaluated.
        shift: constant added to every input entry, in model-input units (Quantus's
            ``input_shift``, default -1). input_layer: the first layer's module name (null:
            found by one forward; it must be a Conv2d or Linear).
        atol: absolute tolerance of ``input_invariance_holds`` (Quantus's 1e-4).
    Returns:
        ``input_invariance`` [B] ``||e' - e||_1 / ||e||_1`` (a map with zero norm is
        divided by 1); ``input_invariance_holds`` [B] 1.0 where every pixel agrees within
        ``atol + 1e-5 |e'|`` (numpy's ``isclose``, as Quantus), else 0.0.
        Costs one explanation per sample.
    """
    explain = need_explain(explain, "input_invariance")
    h, ok = clean(heatmap)
    m = shifted_model(model, x, float(shift), input_layer)
    hs = explain(x + shift, target, model=m).detach().float()
    norm = h.flatten(1).abs().sum(1)
    diff = (hs - h).flatten(1).abs()
    rel = diff.sum(1) / torch.where(norm == 0, torch.ones_like(norm), norm)
    holds = (diff <= atol + 1e-5 * hs.flatten(1).abs()).all(1).float()
    ok = ok & torch.isfinite(hs).flatten(1).all(1)
    return {"input_invariance": nan_where(rel, ok), "input_invariance_holds": nan_where(holds, ok)}
