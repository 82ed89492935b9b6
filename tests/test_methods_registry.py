"""Registry-wide tests: every registered method, run on TinyCNN on CPU.

Small-cost overrides (fewer samples, steps, masks) keep the run short; everything else
uses the method's defaults.
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from faithbench.cli import compose
from faithbench.errors import ConfigError
from faithbench.methods import get, names
from faithbench.types import Batch

LAYER = "features.5"
# Cheaper settings for the sweep; keys absent from a method's signature are ignored.
CHEAP = {"n_samples": 3, "n_steps": 4, "n_masks": 24, "internal_batch_size": 5, "window": 8, "stride": 4}
EXTRA = {"captum": {"attribution": "IntegratedGradients", "attribute_kwargs": {"n_steps": 4}}}
CHEAP["max_iter"] = 3  # extremal_perturbation: a few optimisation steps
ALL = names()


def params_for(name: str, **over) -> dict:
    sig = inspect.signature(get(name).fn).parameters
    p = {k: v for k, v in CHEAP.items() if k in sig}
    if "layer" in sig:
        p["layer"] = LAYER
    if "seed" in sig:
        p["seed"] = 0
    p.update(EXTRA.get(name, {}))
    p.update(over)
    return p


def truth_of(x: Tensor, target: Tensor) -> Batch:
    """Ground truth made from the images themselves (so a sub-batch's is the batch's
    rows), for oracle methods: per sample a mask of the target class (red above its
    mean) and one of another class (green above its mean)."""
    masks = [torch.stack([xi[0] > xi[0].mean(), xi[1] > xi[1].mean()]) for xi in x.cpu()]
    labels = [torch.tensor([int(t), -1 - int(t)]) for t in target.cpu()]
    return Batch(x, target, [str(i) for i in range(len(x))], torch.arange(len(x)),
                 masks=masks, mask_labels=labels)


def attribute(name: str, model: nn.Module, x: Tensor, target: Tensor, **over) -> Tensor:
    if get(name).info.oracle and "truth" not in over:
        over["truth"] = truth_of(x, target) if x.shape[0] == target.shape[0] else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get(name).fn(model, x, target, **params_for(name, **over))


def scaled_close(a: Tensor, b: Tensor, tol: float = 1e-5) -> None:
    scale = b.abs().max().clamp(min=1e-12)
    assert float((a - b).abs().max() / scale) < tol


TARGET = torch.tensor([0, 1, 2, 3])


@pytest.fixture
def model(request, tiny_cnn):
    """TinyCNN, or for a method that explains only some models (``MethodInfo.models``)
    a tiny model of that kind: ``tiny_<kind>`` (``tiny_vit``)."""
    kind = get(request.node.callspec.params["name"]).info.models
    return tiny_cnn if kind == "any" else request.getfixturevalue(f"tiny_{kind}")


def test_registry_lists_the_methods_of_the_issue():
    required = {
        "saliency", "gradient_x_input", "integrated_gradients", "smooth_grad", "guided_backprop",
        "deconvnet", "cam", "grad_cam", "grad_cam_pp", "xgrad_cam", "layer_cam", "score_cam",
        "ablation_cam", "guided_grad_cam", "counterfactual_grad_cam", "occlusion", "rise", "center",
        "random", "edge",
    }
    assert required <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_smoke_shape_dtype_device_finite(name, model, images):
    out = attribute(name, model, images, TARGET)
    assert out.shape == (4, 32, 32)
    assert out.dtype == torch.float32 and out.device == images.device
    assert torch.isfinite(out).all()
    assert out.abs().sum() > 0, "an all-zero map says nothing"


@pytest.mark.parametrize("name", ALL)
def test_batch_invariance(name, model, images):
    batched = attribute(name, model, images, TARGET)
    looped = torch.cat([attribute(name, model, images[i : i + 1], TARGET[i : i + 1]) for i in range(4)])
    scaled_close(batched, looped)
    # Reordering the batch reorders the maps.
    perm = torch.tensor([2, 0, 3, 1])
    scaled_close(attribute(name, model, images[perm], TARGET[perm]), batched[perm])


@pytest.mark.parametrize("name", [n for n in ALL if "chunk" in inspect.signature(get(n).fn).parameters])
def test_chunk_invariance(name, model, images):
    x, t = images[:2], TARGET[:2]
    ref = attribute(name, model, x, t, chunk=1000)
    for chunk in (1, 3):
        scaled_close(attribute(name, model, x, t, chunk=chunk), ref)


@pytest.mark.parametrize("name", [n for n in ALL if get(n).info.stochastic])
def test_seed_reproducible_and_effective(name, model, images):
    a = attribute(name, model, images, TARGET, seed=1)
    b = attribute(name, model, images, TARGET, seed=1)
    c = attribute(name, model, images, TARGET, seed=2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("name", ALL)
def test_no_state_left_on_the_model(name, model, images):
    assert all(p.requires_grad for p in model.parameters())
    model.train()  # the method must not switch modes (TinyCNN has no BN/dropout)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attribute(name, model, images, TARGET)
    assert _hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", ALL)
def test_hooks_removed_on_exception(name, model, images):
    class Boom(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Tensor) -> Tensor:
            self.inner(x)
            raise RuntimeError("boom")

    if get(name).info.model_free:
        pytest.skip("does not run the model")
    model = Boom(model)
    with pytest.raises(RuntimeError, match="boom"):
        attribute(name, model, images, TARGET, **({"layer": "inner." + LAYER} if "layer" in params_for(name) else {}))
    assert _hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", ALL)
def test_yaml_matches_signature(name):
    cfg = OmegaConf.to_container(compose([f"method={name}"]).method)  # generated from the signature
    assert cfg.pop("name") == name
    sig = inspect.signature(get(name).fn).parameters
    params = {k: p.default for k, p in list(sig.items())[3:]}
    assert list(sig)[:3] == ["model", "x", "target"]
    assert set(cfg) == set(params), f"yaml keys {sorted(cfg)} != parameters {sorted(params)}"
    for k, v in cfg.items():
        d = params[k]
        assert v == (list(d) if isinstance(d, tuple) else d), f"{name}.{k}: yaml {v!r} != default {d!r}"


@pytest.mark.parametrize("name", ALL)
def test_bad_target_is_a_config_error(name, model, images):
    with pytest.raises(ConfigError, match="target"):
        attribute(name, model, images, TARGET[:2])


@pytest.mark.parametrize("name", [n for n in ALL if get(n).info.model_free])
def test_model_free_methods_ignore_the_model(name, tiny_cnn, images):
    torch.testing.assert_close(attribute(name, None, images, TARGET), attribute(name, tiny_cnn, images, TARGET))
    assert get(name).info.cost == "free" and not get(name).info.needs_grad


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ALL)
def test_cuda_matches_cpu(name, model, images, monkeypatch):
    # TF32 convolutions round to ~1e-3; compare full float32 arithmetic.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cpu = attribute(name, model, images, TARGET)
    out = attribute(name, model.cuda(), images.cuda(), TARGET.cuda())
    assert out.device.type == "cuda" and out.dtype == torch.float32
    scaled_close(out.cpu(), cpu, tol=1e-3)
