"""Adapter: layer-wise relevance propagation and its relatives through zennit (Anders et
al., "Software for dataset-wide XAI: from local explanations to global insights with
Zennit, CoRelAy, and ViRelAy", arXiv 2021). LRP: Bach et al., PLoS ONE 2015. Optional extra.

A zennit *composite* maps module types to propagation rules (``EpsilonPlusFlat``: the
flat rule for the first layer, z+ for the other convolutions, epsilon for the dense
layers); an *attributor* runs the modified backward pass (``Gradient``: one pass, which
under a composite is LRP; ``SmoothGrad``, ``IntegratedGradients``, ``Occlusion``).
"""

from __future__ import annotations

import inspect
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from torch import Tensor, nn

from faithbench.errors import ConfigError, unknown_choice
from faithbench.methods import register
from faithbench.methods._common import Reduce, check_inputs
from faithbench.methods._peers import import_peer, preserved, to_map
from faithbench.params import Check, joint_rule
from faithbench.preprocess import Preprocess

OutputRelevance = Literal["one_hot", "logit"]
ZennitKind = Literal["composite", "attributor", "canonizer"]


def zennit_classes(module: Any, base: type) -> dict[str, type]:
    """Concrete subclasses of ``base`` defined in zennit ``module``, by class name."""
    return {n: c for n, c in vars(module).items()
            if inspect.isclass(c) and issubclass(c, base) and c is not base
            and not inspect.isabstract(c)}


def composite_classes() -> dict[str, type]:
    """zennit's registered composites (``zennit.composites.COMPOSITES``), by class name."""
    comps = import_peer("zennit.composites", "zennit")
    return {c.__name__: c for c in comps.COMPOSITES.values()}


def canonizer_classes() -> dict[str, type]:
    """Canonizers that take no arguments: zennit's generic ones (``SequentialMergeBatchNorm``)
    and its torchvision ones (``ResNetCanonizer``, ``VGGCanonizer``)."""
    canon = import_peer("zennit.canonizers", "zennit")
    tv = import_peer("zennit.torchvision", "zennit")
    found = {**zennit_classes(canon, canon.Canonizer), **zennit_classes(tv, canon.Canonizer)}
    return {n: c for n, c in sorted(found.items())
            if len(inspect.signature(c.__init__).parameters) == 1}  # self only


def attributor_classes() -> dict[str, type]:
    """zennit's attributors (``Gradient``, ``SmoothGrad``, ``IntegratedGradients``, ...)."""
    attribution = import_peer("zennit.attribution", "zennit")
    return zennit_classes(attribution, attribution.Attributor)


@dataclass(frozen=True)
class ZennitName(Check):
    """The class name of a zennit composite, attributor or canonizer, checked with the
    other parameters (before a run opens); needs zennit installed."""

    kind: ZennitKind

    def problem(self, value: Any) -> str | None:
        find = {"composite": composite_classes, "attributor": attributor_classes,
                "canonizer": canonizer_classes}[self.kind]
        valid = find()
        if value in valid:
            return None
        return f"is not a zennit {self.kind}: {unknown_choice(f'zennit {self.kind}', value, valid)}"


def input_bounds(x: Tensor, preprocess: Preprocess | None) -> dict[str, Tensor]:
    """``low``/``high`` of the z-box rule: the normalised values of black and white
    pixels per channel [1,3,1,1] (zennit expects the lowest and highest possible inputs)."""
    if preprocess is None:
        raise ConfigError("zennit: the composite needs composite_kwargs.low and .high "
                          "(the lowest and highest input values), or a model preprocess")
    white = torch.ones(3, 1, 1, dtype=x.dtype, device=x.device)
    return {"low": preprocess.normalize(torch.zeros_like(white))[None],
            "high": preprocess.normalize(white)[None]}


def make_composite(name: str | None, kwargs: dict[str, Any], canonizers: list[str],
                   x: Tensor, preprocess: Preprocess | None) -> Any:
    """The zennit composite ``name`` (None: no composite, the plain gradient) with
    ``kwargs`` and the named canonizers; ``low``/``high`` default to the input bounds."""
    if name is None:
        return None
    cls, valid = composite_classes()[name], canonizer_classes()
    args = dict(kwargs)
    sig = inspect.signature(cls.__init__).parameters
    if "low" in sig and "high" in sig and not ("low" in args and "high" in args):
        args = {**input_bounds(x, preprocess), **args}
    return cls(**args, canonizers=[valid[c]() for c in canonizers] or None)


@register(optional_context=("seed", "preprocess"), cost="backward")
@joint_rule(lambda p: p["composite"] is not None or not p["canonizers"],
            "canonizers={canonizers!r} need a composite; set method.composite")
def zennit(
    model: nn.Module, x: Tensor, target: Tensor,
    composite: Annotated[str, ZennitName("composite")] | None = "EpsilonPlusFlat",
    attributor: Annotated[str, ZennitName("attributor")] = "Gradient",
    composite_kwargs: dict[str, Any] | None = None, attributor_kwargs: dict[str, Any] | None = None,
    canonizers: list[Annotated[str, ZennitName("canonizer")]] | None = None,
    output_relevance: OutputRelevance = "one_hot", reduce: Reduce = "sum",
    seed: int | None = None, preprocess: Preprocess | None = None,
) -> Tensor:
    """Run ``zennit.attribution.<attributor>`` under ``zennit.composites.<composite>``
    and turn the input relevance into [B,H,W] maps.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        composite: a registered zennit composite class, e.g. "EpsilonPlusFlat",
            "EpsilonGammaBox", "EpsilonAlpha2Beta1Flat", "ExcitationBackprop",
            "GuidedBackprop"; None: no rules (the plain gradient of the attributor).
        attributor: "Gradient" (LRP under a composite), "SmoothGrad",
            "IntegratedGradients", "Occlusion", or another zennit attributor.
        composite_kwargs: constructor arguments of the composite (``epsilon``,
            ``stabilizer``, ``low``/``high``; a box rule's bounds default to the
            normalised black and white pixels of the model's preprocess).
        attributor_kwargs: constructor arguments of the attributor (``n_iter``,
            ``noise_level``, ``window``, ...).
        canonizers: zennit canonizers applied while the composite is registered, e.g.
            ["SequentialMergeBatchNorm"], ["ResNetCanonizer"], ["VGGCanonizer"]
            (BatchNorm folded into the preceding layer, as LRP rules assume).
        output_relevance: the relevance put on the target logit: "one_hot" (1, zennit's
            examples; the maps of the plain gradient) or "logit" (the target's logit,
            Bach et al.'s LRP: input relevance then sums to the logit under LRP-0 on a
            bias-free network). Other classes get 0.
        reduce: channel reduction of the [B,3,H,W] relevance ("sum", zennit's heatmaps).
        seed: seeds the global generator for stochastic attributors (SmoothGrad draws
            with ``torch.randn_like``); None leaves it as it is.
        preprocess: the model's preprocessing (filled by the runner; bounds of box rules).

    Returns:
        [B,H,W] float32.
    """
    target = check_inputs(x, target)
    comp = make_composite(composite, dict(composite_kwargs or {}), list(canonizers or []),
                          x, preprocess)

    def relevance(out: Tensor) -> Tensor:
        onehot = torch.zeros_like(out).scatter_(1, target[:, None].to(out.device), 1.0)
        return onehot * out.detach() if output_relevance == "logit" else onehot

    method = attributor_classes()[attributor](model, composite=comp, **dict(attributor_kwargs or {}))
    with ExitStack() as stack:
        stack.enter_context(preserved(model))
        stack.enter_context(torch.enable_grad())
        if seed is not None:
            devices = [x.device] if x.device.type == "cuda" else []
            stack.enter_context(torch.random.fork_rng(devices=devices))
            torch.manual_seed(int(seed))
        _, rel = method(x.detach().clone(), relevance)
    return to_map(rel.detach(), x.shape[-2:], reduce)
