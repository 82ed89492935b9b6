"""Registry-wide checks: every metric has its config, metadata and defined outputs on
degenerate maps (NaN, constant, all-zero)."""

from __future__ import annotations

import inspect

import pytest
import torch
from omegaconf import OmegaConf

import faithbench.metrics as metrics
from faithbench.cli import compose
from faithbench.preprocess import Preprocess
from faithbench.types import Batch, MetricInfo

METRIC_NODES = OmegaConf.to_container(compose().metric)  # generated from the signatures
POSITIONAL = ["model", "x", "heatmap", "target", "batch"]


def params(name: str) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(metrics.get(name).fn)
    assert list(sig.parameters)[:5] == POSITIONAL, name
    return {k: p for k, p in list(sig.parameters.items())[5:]}


@pytest.mark.parametrize("name", metrics.names())
def test_config_matches_signature(name):
    cfg = dict(METRIC_NODES[name])
    assert cfg.pop("name") == name
    ps = params(name)
    assert set(cfg) == set(ps), name
    for k, v in cfg.items():
        d = ps[k].default
        assert v == listify(d), (name, k, v, d)


def listify(v):
    """Python defaults use tuples where YAML has lists."""
    return [listify(e) for e in v] if isinstance(v, (tuple, list)) else v


def test_every_config_has_a_metric():
    """A node per registered metric, and the ``callable`` node of a dotted-path metric."""
    from faithbench.outside import DOTTED

    assert sorted(set(METRIC_NODES) - {DOTTED}) == metrics.names() and DOTTED in METRIC_NODES


@pytest.mark.parametrize("name", metrics.names())
def test_metadata(name):
    info = metrics.get(name).info
    assert isinstance(info, MetricInfo) and isinstance(info.higher_is_better, bool)
    assert info.needs <= {"boxes", "masks"}
    assert ("explain" in params(name)) == info.needs_explain
    doc = metrics.get(name).fn.__doc__ or ""
    assert "Returns" in doc and "Args" in doc, name


def smoke_batch(b: int, size: int) -> Batch:
    box = torch.tensor([[4.0, 4.0, 20.0, 20.0]])
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[0, 4:20, 4:20] = True
    return Batch(images=torch.zeros(b, 3, size, size), labels=torch.zeros(b, dtype=torch.long),
                 ids=[str(i) for i in range(b)], index=torch.arange(b),
                 boxes=[box] * b, box_labels=[torch.tensor([0])] * b,
                 box_difficult=[torch.tensor([False])] * b, masks=[mask] * b,
                 mask_labels=[torch.tensor([0])] * b, orig_size=torch.full((b, 2), 2.0 * size),
                 scale=torch.full((b, 2), 2.0), offset=torch.zeros(b, 2),
                 hard_classes=[torch.tensor([0])] * b)


def quick_params(name: str, model) -> dict:
    ps = params(name)
    kw = {}
    if "explain" in ps:
        def explain(x, target, model=model):
            return x.mean(1) * (1 + target.view(-1, 1, 1))
        kw["explain"] = explain
    if "preprocess" in ps:
        kw["preprocess"] = Preprocess()
    if "step" in ps:
        kw["step"] = 0.25
    if "n_samples" in ps:
        kw["n_samples"] = 2
    return kw


@pytest.mark.parametrize("name", metrics.names())
def test_degenerate_maps_give_defined_outputs(name, tiny_cnn):
    x = torch.randn(4, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    h = torch.randn(4, 24, 24, generator=torch.Generator().manual_seed(1))
    h[1] = float("nan")
    h[2] = 0.0
    h[3] = 0.7
    target = torch.zeros(4, dtype=torch.long)
    out = metrics.get(name).fn(tiny_cnn, x, h, target, smoke_batch(4, 24),
                               **quick_params(name, tiny_cnn))
    assert name in out
    info = metrics.get(name).info
    for k, v in out.items():
        assert v.shape[0] == 4 and v.dtype.is_floating_point, k
        assert k == name or k.endswith(("_curve", "_curve_x")) or k in info.outputs or v.dim() == 1, k
        if k.endswith("_curve_x"):
            assert k[:-2] in out and out[k[:-2]].shape == v.shape and torch.isfinite(v).all(), k
    for k in info.curve_axes:
        assert k in out and k.endswith("_curve"), (name, k)
        if k in info.outputs or k == name:
            assert torch.isnan(v[1]).all(), (k, "a NaN map must give NaN")
    # Constant and all-zero maps give a number (documented per metric); only metrics
    # with no per-sample value by construction may give NaN there.
    if name not in NAN_BY_CONSTRUCTION:
        assert torch.isfinite(out[name][[0, 2, 3]]).all(), name


# max_box_acc: the score exists only at the dataset level (from max_box_acc_curve).
NAN_BY_CONSTRUCTION = {"max_box_acc"}
# efficient_mprt: a rise relative to a one-valued map's entropy (0) does not exist.
NAN_BY_CONSTRUCTION |= {"efficient_mprt"}
