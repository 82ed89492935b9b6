"""The offline ``gap_vs_gmp`` preset (CAM paper, GAP vs GMP): its sweep, the protocol
values each job resolves to, and every job a valid configuration of the bundled pair."""

from __future__ import annotations

import itertools

from omegaconf import OmegaConf

from faithbench import datasets, methods, metrics, models
from faithbench.config import DATASET_KEYS, entry_params, fill_context
from faithbench.run import apply_method_params
from test_presets import _compose

SWEEP = {"+pair": "shapes", "model": "shapes_cnn,shapes_cnn_gmp", "method": "cam,grad_cam",
         "dataset.limit": "200"}


def _jobs():
    """Every job of the sweep, composed as the runner sees it."""
    keys, values = zip(*((k, v.split(",")) for k, v in SWEEP.items()))
    for combo in itertools.product(*values):
        overrides = ["experiment=gap_vs_gmp", *(f"{k}={v}" for k, v in zip(keys, combo))]
        yield apply_method_params(_compose(overrides))


def test_sweep_is_both_poolings_times_cam_and_grad_cam():
    cfg = _compose(["experiment=gap_vs_gmp"], hydra=True)
    assert dict(cfg.hydra.sweeper.params) == SWEEP


def test_every_job_resolves_to_the_protocol():
    seen = set()
    for cfg in _jobs():
        seen.add((cfg.model.name, cfg.method.name))
        assert cfg.dataset.name == "shapes" and cfg.dataset.limit == 200 and cfg.dataset.seed == 0
        assert cfg.target == "label" and cfg.tracking.experiment == "gap_vs_gmp"
        assert list(cfg.metrics) == ["box_localisation", "pointing_game", "energy_pointing_game",
                                     "deletion", "insertion"]
        box = cfg.metric.box_localisation
        assert (box.threshold, box.threshold_rule, box.iou_threshold) == (0.2, "max", 0.5)
        # the shapes pair's tolerance: 3% of the image side, not TorchRay's 15 px
        pg = cfg.metric.pointing_game
        assert (pg.tolerance, pg.tolerance_unit) == (0.03, "fraction")
        assert cfg.method.layer is None  # the model's own CAM layer, block3
        what = f"gap_vs_gmp {cfg.model.name} {cfg.method.name}"
        fill_context(methods.get(cfg.method.name).fn, entry_params(cfg.method), {}, what)
        for m in cfg.metrics:
            fill_context(metrics.get(m).fn, entry_params(cfg.metric[m]), {}, what)
        fill_context(models.get(cfg.model.name).fn, entry_params(cfg.model), {}, what)
        fill_context(datasets.get("shapes").fn, entry_params(cfg.dataset, DATASET_KEYS), {}, what)
        assert models.get(cfg.model.name).info.label_space == "shapes"
        assert "published" not in OmegaConf.to_container(cfg)  # no published number (docs)
    assert seen == {(m, k) for m in ("shapes_cnn", "shapes_cnn_gmp") for k in ("cam", "grad_cam")}
