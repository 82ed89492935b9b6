"""The metric report card: truth agreement and control separation on hand-made runs
where the right answer is known (a metric equal to the truth, a metric that prefers the
controls, one whose variant reverses the ranking), each criterion against a naive loop,
and one tiny real run through the runner and ``faithbench report --metrics-card``."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from scipy import stats

from faithbench.report.board import make_board
from faithbench.report.card import (board_card, consistency, control_separation, fails,
                                    kendall_tau, truth_agreement)
from faithbench.report.merge import Group
from faithbench.report.runs import RunInfo

METHODS = ["oracle", "oracle_other", "random", "center", "grad_cam", "saliency"]
N = 12
METRICS = "['cue_mass', 'deletion', 'insertion', 'insertion_zero', 'sparseness']"
PARAMS = {"metrics": METRICS, "metric.insertion.substitute": "blur",
          "metric.insertion_zero.name": "insertion", "metric.insertion_zero.substitute": "zero",
          "metric.deletion.substitute": "zero", "seed": "0"}


def truth_scores(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per method [N] (mass on the used cue, mass on the other cue)."""
    out = {"oracle": (np.ones(N), np.zeros(N)), "oracle_other": (np.zeros(N), np.ones(N))}
    for m, level in (("random", 0.05), ("center", 0.1), ("grad_cam", 0.5), ("saliency", 0.3)):
        used = np.clip(level + 0.1 * rng.standard_normal(N), 0, 1)
        out[m] = (used, np.clip(0.02 + 0.01 * rng.standard_normal(N), 0, 1))
    return out


def toy_groups() -> tuple[list[Group], dict[str, np.ndarray]]:
    """Runs of 6 methods on N cues scenes. deletion (lower is better) is minus the truth
    score: it agrees with the truth exactly. insertion prefers the controls (random,
    center, oracles high; real methods low). insertion_zero is insertion reversed.
    sparseness is the same for every method (a metric that cannot rank)."""
    rng = np.random.default_rng(0)
    ts = truth_scores(rng)
    groups, truth = [], {}
    for j, m in enumerate(METHODS):
        used, other = ts[m]
        truth[m] = used - other
        ins = (rng.uniform(0.6, 0.9, N) if m in ("random", "center", "oracle", "oracle_other")
               else rng.uniform(0.1, 0.4, N))
        f = pd.DataFrame({"id": [f"cues/0/{i}" for i in range(N)], "image_id": [f"cues/0/{i}" for i in range(N)],
                          "index": range(N), "target": 0, "pred": 0, "correct": True, "status": "ok",
                          "cue_mass": used, "cue_mass_other": other, "deletion": -(used - other),
                          "insertion": ins, "insertion_zero": 1 - ins, "sparseness": 0.5,
                          "cue_verification": 1.0})
        tags = {"model": "cue_shape_cnn", "method": m, "dataset": "cues"}
        cost = {"deletion_seconds_per_sample": 0.01 * (j + 1), "deletion_forwards_per_sample": 29.0}
        g = Group(f"k-{m}", [RunInfo(f"r-{m}", "1", 0, tags, dict(PARAMS), cost)])
        g.label, g.frame = m, f
        groups.append(g)
    return groups, truth


@pytest.fixture(scope="module")
def card() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    groups, truth = toy_groups()
    b = make_board("cue_shape_cnn", "cues", groups, None, 200, 0)
    rows, proto = board_card(b, 200, 0)
    return pd.DataFrame(rows).set_index("metric"), pd.DataFrame(proto), truth


def test_a_metric_equal_to_the_truth_agrees_fully(card):
    t, _, _ = card
    r = t.loc["deletion"]
    assert r["truth"] == pytest.approx(1.0) and r["truth_ci_low"] == pytest.approx(1.0)
    assert r["oracle_above_other"] == 1.0 and r["oracle_first"] == 1.0
    assert r["fails"] == ""
    # cue_mass alone (mass on the used cue) ranks the oracle first too
    assert t.loc["cue_mass", "oracle_first"] == 1.0 and t.loc["cue_mass", "truth"] > 0.8


def test_a_metric_that_prefers_the_controls_is_flagged(card):
    t, _, _ = card
    r = t.loc["insertion"]
    assert r["control_win_sample"] == 0.0 and r["control_win_mean"] == 0.0
    assert r["control_effect"] < -2
    assert "controls" in r["fails"]
    # its oracle and wrong oracle are both "high": the truth check sees no preference
    assert t.loc["deletion", "control_win_sample"] == 1.0


def test_a_metric_that_ties_every_method_has_no_truth_agreement(card):
    t, _, _ = card
    r = t.loc["sparseness"]
    assert r["truth"] == 0.0 and math.isnan(r["alpha"])  # alpha: no variation at all
    assert r["oracle_first"] == pytest.approx(1 / len(METHODS))  # a six-way tie, split


def test_no_truth_without_verification():
    groups, _ = toy_groups()
    for g in groups:
        g.frame = g.frame.drop(columns="cue_verification")  # masks, but no verified model
    rows, _ = board_card(make_board("shapes_cnn", "shapes", groups, None, 50, 0), 50, 0)
    r = pd.DataFrame(rows).set_index("metric").loc["deletion"]
    assert "truth" not in r.index or math.isnan(r["truth"])
    assert r["control_win_sample"] == 1.0


def test_truth_agreement_equals_a_per_scene_loop(card):
    t, _, truth = card
    groups, _ = toy_groups()
    ins = {g.label: g.frame["insertion"].to_numpy() for g in groups}
    rhos = [stats.spearmanr([ins[m][i] for m in METHODS], [truth[m][i] for m in METHODS]).statistic
            for i in range(N)]
    assert t.loc["insertion", "truth"] == pytest.approx(np.mean(rhos))
    wins = [(ins["oracle"][i] > ins["oracle_other"][i]) + 0.5 * (ins["oracle"][i] == ins["oracle_other"][i])
            for i in range(N)]
    assert t.loc["insertion", "oracle_above_other"] == pytest.approx(np.mean(wins))


def test_control_separation_equals_a_loop_over_triples():
    rng = np.random.default_rng(1)
    v = pd.DataFrame(rng.integers(0, 4, (9, 4)).astype(float), columns=["random", "edge", "a", "b"])
    got = control_separation(v, ["random", "edge"], ["a", "b"])
    wins = [1.0 if v.loc[i, m] > v.loc[i, c] else 0.5 if v.loc[i, m] == v.loc[i, c] else 0.0
            for i, c, m in itertools.product(range(9), ["random", "edge"], ["a", "b"])]
    assert got["control_win_sample"] == pytest.approx(np.mean(wins))
    d = [(v[m].mean() - v[c].mean()) / np.sqrt((v[m].var() + v[c].var()) / 2)
         for c, m in itertools.product(["random", "edge"], ["a", "b"])]
    assert got["control_effect"] == pytest.approx(np.mean(d))


def test_hand_computed_truth_agreement():
    # scene 0: the metric orders a > b > c as the truth does (rho 1); scene 1: reversed (-1);
    # scene 2: a tie between b and c (ranks 1, 2.5, 2.5 vs 1, 2, 3: rho = 0.866)
    v = pd.DataFrame([[3, 2, 1], [1, 2, 3], [2, 1, 1]], columns=["oracle", "b", "oracle_other"], dtype=float)
    t = pd.DataFrame([[1, 0, -1]] * 3, columns=["oracle", "b", "oracle_other"], dtype=float)
    got = truth_agreement(v, t, 100, 0)
    assert got["truth"] == pytest.approx((1 - 1 + math.sqrt(3) / 2) / 3)
    assert got["oracle_above_other"] == pytest.approx(2 / 3)
    assert got["oracle_first"] == pytest.approx(2 / 3)


def test_protocol_variant_that_reverses_the_ranking(card):
    t, proto, _ = card
    p = proto.set_index("variant").loc["insertion_zero"]
    assert p["choice"] == "substitute=zero" and p["tau"] == pytest.approx(-1.0)
    assert p["consistency"] == pytest.approx(-1.0)
    assert t.loc["insertion", "min_tau"] == pytest.approx(-1.0)
    assert "protocol" in t.loc["insertion", "fails"] and "reliability" in t.loc["insertion", "fails"]
    assert "insertion_zero" not in t.index  # a variant, not a row of its own


def test_cost_is_the_median_over_runs(card):
    t, _, _ = card
    assert t.loc["deletion", "seconds_per_sample"] == pytest.approx(0.035)
    assert t.loc["deletion", "forwards_per_sample"] == 29.0
    assert math.isnan(t.loc["insertion", "seconds_per_sample"])


def test_small_helpers():
    a = pd.Series({"x": 3.0, "y": 2.0, "z": 1.0})
    assert kendall_tau(a, a) == 1.0 and kendall_tau(a, -a) == -1.0
    assert math.isnan(kendall_tau(a, a * 0))
    v = pd.DataFrame([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]], columns=list("abc"))
    assert consistency(v, v) == pytest.approx(1.0)
    assert fails({"oracle_above_other": 0.4, "control_win_sample": 0.9, "alpha": 0.5}) == "truth"
    assert fails({"truth_ci_high": 0.0, "alpha": -0.1}) == "truth, reliability"
    assert fails({"truth": math.nan, "min_tau": 0.1}) == ""


def run_cfg(tmp_path, method: str, metrics: list[str], dataset: str = "cues"):
    from omegaconf import OmegaConf

    ds = ({"name": "cues", "n": 6, "rule": "shape", "min_used_flip": 0.9, "max_other_flip": 0.05}
          if dataset == "cues" else {"name": "photos"})
    return OmegaConf.create(dict(
        model={"name": "cue_shape_cnn" if dataset == "cues" else "efficientnet_lite0"},
        method={"name": method},
        dataset={**ds, "shard": 0, "num_shards": 1, "limit": 4, "subset_seed": None},
        metric={"cue_mass": {}, "deletion": {"step": 0.25}, "sparseness": {},
                "deletion_blur": {"name": "deletion", "step": 0.25, "substitute": "blur"}},
        metrics=metrics, target="label", seed=0, device="cpu", batch_size=4, num_workers=0,
        part_size=64, force=False, cache=False, out_dir=str(tmp_path / "out"),
        tracking={"uri": None, "experiment": "card"}, figures={"grid": 2}))


@pytest.mark.slow  # 4 runs and a report: about 20 s alone, over a minute on the busy 2 cores
def test_end_to_end_oracles_variants_cost_and_the_card_files(workdir):
    from faithbench import datasets, models
    from faithbench.report.cli import main
    from faithbench.run import run
    from faithbench.types import stack

    metrics = ["cue_mass", "deletion", "deletion_blur", "sparseness"]
    for m in ("oracle", "oracle_other", "random", "grad_cam"):
        res = run(run_cfg(workdir, m, metrics))
        assert {"deletion", "deletion_blur", "deletion_blur_ci_low"} <= res.keys()
        assert res["deletion"] != res["deletion_blur"]
    c = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = {r.data.tags["method"]: r for r in c.search_runs([c.get_experiment_by_name("card").experiment_id])}
    assert runs["oracle"].data.metrics["cue_mass"] == 1.0 and runs["oracle_other"].data.metrics["cue_mass"] == 0.0
    # cost: deletion at step 0.25 forwards 5 images per sample (the curve's points)
    assert runs["grad_cam"].data.metrics["deletion_forwards_per_sample"] == 5.0
    assert runs["grad_cam"].data.metrics["deletion_seconds_per_sample"] > 0
    assert runs["grad_cam"].data.metrics["sparseness_forwards_per_sample"] == 0.0
    spec = models.load("cue_shape_cnn")
    ds = datasets.build("cues", spec.preprocess, n=6, rule="shape")
    b = stack([ds[0]], [0])
    from faithbench.methods import get

    mask = get("oracle").fn(None, b.images, b.labels.long(), truth=b)
    assert torch.equal(mask[0] > 0, b.masks[0][0].bool())  # the shape (used cue) mask

    out = workdir / "card"
    assert main(["--experiment", "card", "--out", str(out), "--metrics-card", "--n-resamples", "50"]) == 0
    card = pd.read_csv(out / "card.csv").set_index("metric")
    assert set(card.index) == {"cue_mass", "deletion", "sparseness"}  # deletion_blur: a variant
    assert card.loc["cue_mass", "oracle_first"] == 1.0 and card.loc["cue_mass", "truth"] > 0.5
    proto = pd.read_csv(out / "card_protocol.csv")
    assert proto["choice"].tolist() == ["substitute=blur"]
    assert (out / "card.md").exists() and (out / "card.tex").exists() and (out / "figures" / "card.png").exists()


def test_oracle_refuses_data_without_masks_and_calls_without_truth():
    from faithbench.errors import ConfigError
    from faithbench.methods import get
    from faithbench.types import Batch

    x = torch.zeros(2, 3, 8, 12)
    t = torch.tensor([0, 1])
    with pytest.raises(ConfigError, match="runs only through the runner"):
        get("oracle").fn(None, x, t)
    with pytest.raises(ConfigError, match="needs a dataset with masks.*Valid choices"):
        get("oracle").fn(None, x, t, truth=Batch(x, t, ["a", "b"], torch.arange(2)))


def test_metric_card_preset_lists_every_metric_and_valid_variants():
    """Every registered metric is in the preset (cue-only ones included); every variant
    names an entry and changes parameters it accepts; every job composes."""
    from omegaconf import OmegaConf

    from faithbench import metrics as registry
    from faithbench.cli import compose
    from faithbench.config import entry_params, fill_context
    from faithbench.run import apply_method_params

    base = compose(["experiment=metric_card"])
    listed = list(base.metrics)
    entries = {m: (base.metric[m].get("name") or m) for m in listed}
    assert set(registry.names()) <= {m for m, e in entries.items() if m == e}
    for m, e in entries.items():
        fill_context(registry.get(e).fn, entry_params(base.metric[m]), {}, f"metric {m}")
    for pair, method in (("cue_marker", "oracle"),):
        cfg = apply_method_params(compose(["experiment=metric_card", f"+pair={pair}", f"method={method}"]))
        assert cfg.tracking.experiment == "metric_card" and cfg.batch_size == 8
        assert OmegaConf.select(cfg, "metric.deletion_blur.substitute") == "blur"
