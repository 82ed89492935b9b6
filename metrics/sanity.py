"""Sanity check by model parameter randomisation (Adebayo et al., NeurIPS 2018, Sec. 3.1):
cascading re-initialisation from the top layer down; a map that depends on the model
should become dissimilar to the original map."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError, unknown_choice
from faithbench.metrics import register
from faithbench.metrics._common import Explain, clean, finite_rows, nan_where, need_explain
from faithbench.metrics._similarity import compare
from faithbench.types import Batch


def cascade(model: nn.Module, layers: Sequence[str] | None) -> list[list[str]]:
    """Groups of module names to re-initialise, top (output side) first. Default: every
    module with parameters of its own and a ``reset_parameters``, in reverse definition
    order; a given name re-initialises every such module inside it (a block)."""
    resettable = [n for n, m in model.named_modules()
                  if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False))]
    names = dict(model.named_modules())
    groups = [[n] for n in reversed(resettable)] if layers is None else []
    for layer in layers or []:
        if layer not in names:
            raise unknown_choice("layer", layer, [n for n in names if n])
        group = [n for n in resettable if n == layer or n.startswith(layer + ".") or not layer]
        if not group:
            raise ConfigError(f"layer {layer!r} has no parameters to re-initialise")
        groups.append(group)
    if not groups:
        raise ConfigError("model_randomisation: the model has no layers to re-initialise")
    return groups


def layer_seed(seed: int | None, step: int) -> int:
    """Seed of cascade step ``step``. The offset keeps it away from small seeds, so a
    layer is never "re-initialised" to the very weights a model got from
    ``torch.manual_seed(0)`` at construction (toy and test models)."""
    return 0x5EED_0000 + (seed or 0) * 1_000_003 + step


def reinitialise(model: nn.Module, names: Sequence[str], seed: int) -> None:
    """``reset_parameters()`` (PyTorch's default init) of the named modules, drawn from
    ``torch.manual_seed(seed)`` inside a forked RNG so global random state is untouched."""
    mods = dict(model.named_modules())
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for n in names:
            mods[n].reset_parameters()


@register(higher_is_better=False, context=("explain", "seed"),
          outputs={"model_randomisation_ssim": False, "model_randomisation_final": False},
          curve_axes={f"model_randomisation{k}_curve": "layers re-initialised (top down)"
                      for k in ("", "_ssim")})
def model_randomisation(model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
                        batch: Batch | None = None, explain: Explain | None = None,
                        layers: Sequence[str] | None = None, absolute: bool = True,
                        seed: int | None = None) -> dict[str, Tensor]:
    """Cascading randomisation: re-initialise the top layer, explain, then also the next
    layer down, and so on; compare each map with the original map by Spearman rank
    correlation (of |map| by default, as Adebayo et al.) and SSIM of the [0,1] maps. The
    model is deep-copied once; the original is never modified. Layer l (0 = top) is
    re-initialised under ``torch.manual_seed(layer_seed(seed, l))``.

    Args:
        explain: ``explain(x, target, model=m) -> [B,H,W]`` on a given model.
        layers: module names, top first (each re-initialises all resettable modules in
            it); None: every module with own parameters (Quantus's order).
        absolute: compare |maps|. seed: null for the run seed.
    Returns:
        ``model_randomisation`` [B] mean Spearman over the L steps (lower: the map
        depends more on the model; a step whose map is not finite is NaN in the curve
        and left out of the mean, as in the stability metrics); ``model_randomisation_ssim``
        [B] mean SSIM;
        ``model_randomisation_final`` [B] Spearman with every layer randomised;
        curves ``model_randomisation_curve`` (Spearman), ``_ssim_curve`` [B,L] and
        their ``_x`` (1..L, the number of layers re-initialised).
        Costs L explanations per sample.
    """
    explain = need_explain(explain, "model_randomisation")
    h, ok = clean(heatmap)
    m = copy.deepcopy(model)
    groups = cascade(m, layers)
    rho, sim = [], []
    nan = torch.full((), float("nan"), device=h.device)
    for step, names in enumerate(groups):
        reinitialise(m, names, layer_seed(seed, step))
        hr = explain(x, target, model=m).detach().float()
        good = finite_rows(hr)
        hr = torch.where(good[:, None, None], hr, torch.zeros((), device=hr.device))
        s = compare(hr, h, topk=0.1, absolute=absolute)
        rho.append(torch.where(good, s["spearman"], nan))
        sim.append(torch.where(good, s["ssim"], nan))
    curve, ssim_curve = torch.stack(rho, 1), torch.stack(sim, 1)
    out = {"model_randomisation": curve.nanmean(1), "model_randomisation_ssim": ssim_curve.nanmean(1),
           "model_randomisation_final": curve[:, -1], "model_randomisation_curve": curve,
           "model_randomisation_ssim_curve": ssim_curve}
    out = {k: nan_where(v, ok) for k, v in out.items()}
    steps = torch.arange(1, len(groups) + 1, dtype=torch.float32, device=h.device)
    for k in ("model_randomisation_curve_x", "model_randomisation_ssim_curve_x"):
        out[k] = steps.expand(h.shape[0], -1)
    return out
