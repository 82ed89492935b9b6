"""SmoothGrad (Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by
adding noise", ICML Workshop on Visualization for Deep Learning 2017)."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.methods import get, register
from faithbench.methods._common import check_inputs, reduce_channels
from faithbench.methods._grad import CHANNEL_MAPS
from faithbench.ops import generator
from faithbench.params import Count, NonNegative, Registered


@register(context=("seed",), optional_context=("layer",), cost="backward")
def smooth_grad(
    model: nn.Module, x: Tensor, target: Tensor,
    base: Annotated[str, Registered("method", itself="smooth_grad")] = "saliency",
    noise_level: NonNegative = 0.15, n_samples: Count = 50, seed: int | None = None,
    base_params: dict[str, Any] | None = None, layer: str | None = None, chunk: Count = 64,
) -> Tensor:
    """Average of a method's maps over noisy copies of the input (Eq. 2 of the paper):
    M(x) = 1/n sum_i M_base(x + N(0, sigma^2)), sigma = noise_level * (max(x) - min(x)).

    For the gradient family (saliency, gradient_x_input, integrated_gradients,
    guided_backprop, deconvnet) the per-channel attributions are averaged and then
    reduced with the base's ``reduce``, as the paper averages gradients; any other
    registered method has its [B,H,W] maps averaged.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        base: name of a registered method.
        noise_level: noise std as a fraction of each image's value range (paper: 10-20%).
        n_samples: noisy copies.
        seed: draws the noise; one draw [n,3,H,W] is shared by all samples, so a sample's
            map does not depend on the rest of the batch.
        base_params: parameters for the base method.
        layer: passed to the base when it takes a layer.
        chunk: images per call of the base: ``max(1, chunk // B)`` noisy copies of the
            batch go through the base together (the same noise and maps as one copy at
            a time, up to float rounding).

    Returns:
        [B,H,W] float32.
    """
    target = check_inputs(x, target)
    if base == "smooth_grad":
        raise ConfigError("smooth_grad cannot wrap itself; base must be another method")
    entry = get(base)
    params = dict(base_params or {})
    sig = inspect.signature(entry.fn).parameters
    if "layer" in sig and params.get("layer") is None:
        params["layer"] = layer
    if "seed" in sig and params.get("seed") is None:
        params["seed"] = seed
    unknown = sorted(set(params) - set(list(sig)[3:]))
    if unknown:
        raise ConfigError(f"base_params {unknown} are not parameters of {base!r}; "
                          f"valid: {', '.join(list(sig)[3:])}")
    chan = CHANNEL_MAPS.get(base)
    reduce = params.pop("reduce", chan.reduce) if chan else None
    sigma = noise_level * (x.amax((1, 2, 3)) - x.amin((1, 2, 3)))
    fn = chan.fn if chan else entry.fn
    b, n = x.shape[0], int(n_samples)
    per_call = max(1, int(chunk) // b)  # chunk: a declared Count
    gen = generator(seed)
    total: Tensor | None = None
    for start in range(0, n, per_call):
        k = min(per_call, n - start)
        # drawn one copy at a time, so the noise does not depend on chunk
        noise = torch.stack([torch.randn(x.shape[1:], generator=gen) for _ in range(k)])
        noise = noise.to(x.device, x.dtype)
        xn = x[None] + sigma[None, :, None, None, None] * noise[:, None]  # [k,B,3,H,W]
        out = fn(model, xn.flatten(0, 1), target.repeat(k), **params).float()
        out = out.unflatten(0, (k, b)).sum(0)
        total = out if total is None else total + out
    mean = total / n
    return reduce_channels(mean, reduce) if chan else mean
