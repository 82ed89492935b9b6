"""The known-truth track on the shipped models: verification rates, refusal of a model
that fails, the runner's logging, and methods scored against chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from faithbench import datasets, methods, models
from faithbench.errors import IncompatibleError
from faithbench.metrics.truth import cue_mass, cue_pointing_game
from faithbench.models.cue_cnn import build as build_net
from faithbench.report.truth import model_contrast
from faithbench.truth import VerificationError, verify
from faithbench.types import stack

RULES = ("shape", "marker")
N = 32  # scenes scored per model in the method test (seed 0: held out from training)


@pytest.fixture(scope="module")
def specs():
    return {r: models.load(f"cue_{r}_cnn") for r in RULES}


@pytest.fixture(scope="module")
def data(specs):
    return {r: datasets.build("cues", specs[r].preprocess, n=300, rule=r) for r in RULES}


def test_shipped_models_pass_their_verification(specs, data):
    for r in RULES:
        v = verify(specs[r], data[r], range(300), torch.device("cpu"))
        assert v.used_rate >= 0.97 and v.other_rate <= 0.02, (r, v.summary())


def test_a_model_on_the_other_rule_fails_with_both_rates_in_the_message(specs, data):
    # the marker model's rates on the shape rule: removing the shape changes nothing,
    # removing the marker changes nearly everything
    with pytest.raises(VerificationError, match=r"removing the shape .* changes [0-9.]+% .*"
                                                r"removing the marker changes 9[0-9.]+%"):
        verify(specs["marker"], data["shape"], range(100), torch.device("cpu"))


def cfg(tmp_path, model: str, rule: str, method: str = "edge", **model_params):
    return OmegaConf.create(dict(
        model={"name": model, **model_params}, method={"name": method},
        dataset={"name": "cues", "n": 6, "rule": rule, "shard": 0, "num_shards": 1,
                 "limit": None, "subset_seed": None, "min_used_flip": 0.9, "max_other_flip": 0.05},
        metric={"cue_mass": {}, "cue_pointing_game": {"tolerance": 1.5}},
        metrics=["cue_mass", "cue_pointing_game"], target="label", seed=0, device="cpu",
        batch_size=4, num_workers=0, part_size=64, force=False, cache=True,
        out_dir=str(tmp_path / "out"), tracking={"uri": None, "experiment": "truth"},
        figures={"grid": 2}))


def test_runner_logs_the_verification_and_refuses_failing_or_mismatched_models(workdir):
    from faithbench.run import run

    res = run(cfg(workdir, "cue_marker_cnn", "marker"))
    assert res["cue_verification_used"] == 1.0 and res["cue_verification_other"] == 0.0
    c = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    (r,) = c.search_runs([c.get_experiment_by_name("truth").experiment_id])
    assert r.data.metrics["cue_verification"] == 1.0 and r.data.params["dataset.rule"] == "marker"
    assert "cue_mass" in r.data.metrics
    with pytest.raises(IncompatibleError, match="cues:rule=shape"):
        run(cfg(workdir, "cue_marker_cnn", "shape"))
    torch.manual_seed(0)
    path = workdir / "untrained.pt"
    torch.save(build_net("shape").state_dict(), path)  # an untrained net uses no cue
    with pytest.raises(VerificationError, match="removing the shape"):
        run(cfg(workdir, "cue_shape_cnn", "shape", checkpoint=str(path)))
    assert len(c.search_runs([c.get_experiment_by_name("truth").experiment_id])) == 1


@pytest.fixture(scope="module")
def scores(specs, data):
    """method -> rule -> {output: [N] numpy} on the same N scenes for both models."""
    out: dict = {}
    for name in ("edge", "random", "grad_cam", "integrated_gradients"):
        entry = methods.get(name)
        for r in RULES:
            batch = stack([data[r][i] for i in range(N)], list(range(N)))
            kw = {"seed": 0} if entry.info.stochastic else {}
            if name == "integrated_gradients":
                kw["n_steps"] = 16  # Gauss-Legendre: close to the 50-step default, faster
            if entry.info.needs_layer:
                kw["layer"] = specs[r].cam_layer
            h = entry.fn(specs[r].model, batch.images, batch.labels, **kw).detach()
            res = {**cue_mass(None, batch.images, h, batch.labels, batch),
                   **cue_pointing_game(None, batch.images, h, batch.labels, batch)}
            out.setdefault(name, {})[r] = {k: v.numpy() for k, v in res.items() if v.ndim == 1}
    return out


def contrast(s: dict, key: str = "cue_mass") -> np.ndarray:
    a, b = s["shape"], s["marker"]
    return model_contrast(a[key], a[f"{key}_other"], b[key], b[f"{key}_other"])


def test_controls_score_at_chance(scores):
    for name in ("edge", "random"):
        c = contrast(scores[name])
        assert np.all(c == 0.0), name  # the same map for both models: exactly zero
        assert np.all(contrast(scores[name], "cue_pointing_game") == 0.0)
    for r in RULES:  # a random map's share is the cue's area, its point a random pixel
        s = scores["random"][r]
        assert abs(s["cue_mass"].mean() - s["cue_mass_chance"].mean()) < 0.01
        assert s["cue_pointing_game"].mean() <= 3 * s["cue_pointing_game_chance"].mean() + 0.05


def test_faithful_methods_score_well_above_chance(scores):
    for name in ("grad_cam", "integrated_gradients"):
        # the mass contrast is bounded by how much of a map fits on a small cue: a
        # 16x16 Grad-CAM holds about a third of its mass on the shape, a seventh on
        # the 6-pixel marker (numbers in docs/truth.md)
        assert contrast(scores[name]).mean() > 0.15, name
        assert contrast(scores[name], "cue_pointing_game").mean() > 0.6, name
        for r in RULES:
            s = scores[name][r]
            assert s["cue_mass"].mean() > 4 * s["cue_mass_chance"].mean(), (name, r)
            assert s["cue_mass"].mean() > 3 * s["cue_mass_other"].mean(), (name, r)

