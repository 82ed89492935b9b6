"""The offline ``cnn_vs_vit`` preset: the bundled CNN and ViT on the same shapes scenes,
every method that applies to either; a method that fits one family only is refused by
its model check before any run opens, so the sweep skips it on the other."""

from __future__ import annotations

import pytest
import torch

from faithbench import methods, models
from faithbench.errors import ConfigError
from faithbench.run import apply_method_params
from test_presets import _compose

OPTIONAL = {"captum", "pytorch_grad_cam", "zennit"}  # adapters: need an extra and a class


def test_sweep_is_both_models_times_every_method():
    cfg = _compose(["experiment=cnn_vs_vit"], hydra=True)
    params = cfg.hydra.sweeper.params
    assert params.model.split(",") == ["shapes_cnn", "shapes_vit"]
    assert params["+pair"] == "shapes"
    every = {n for n in methods.names() if n not in OPTIONAL and not methods.get(n).info.oracle}
    assert set(params.method.split(",")) == every
    job = apply_method_params(_compose(["experiment=cnn_vs_vit", "+pair=shapes", "model=shapes_vit",
                                        "method=grad_cam"]))
    assert job.dataset.name == "shapes" and job.dataset.limit == 24
    assert job.tracking.experiment == "cnn_vs_vit"
    assert list(job.metrics) == ["deletion", "insertion", "pointing_game", "energy_pointing_game"]


def test_each_method_fits_the_family_its_flag_says():
    cnn, vit = models.load("shapes_cnn").model, models.load("shapes_vit").model
    x, target = torch.rand(2, 3, 64, 64), torch.tensor([0, 3])
    for name in ("cam", "excitation_backprop", "raw_attention", "attention_rollout",
                 "gradient_rollout", "legrad", "grad_cam", "saliency"):
        info = methods.get(name).info
        fits = {"any": (cnn, vit), "cnn": (cnn,), "vit": (vit,)}[info.models]
        for model in (cnn, vit):
            if info.check_model is None:
                continue
            if model in fits:
                info.check_model(model)
            else:  # the runner turns the ConfigError into a skip
                with pytest.raises(ConfigError):
                    info.check_model(model)
    # and every ViT-applicable method runs on shapes_vit at input resolution
    for name in ("grad_cam", "legrad", "gradient_rollout"):
        entry = methods.get(name)
        kw = {"layer": "blocks.1.norm1"} if "layer" in entry.info.injected else {}
        out = entry.fn(vit, x, target, **kw)
        assert out.shape == (2, 64, 64) and torch.isfinite(out).all()
