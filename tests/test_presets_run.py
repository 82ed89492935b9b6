"""The TorchRay VOC preset end to end: `faithbench -m experiment=torchray_pointing_voc`
on a tiny VOC tree in the native layout (with TorchRay's difficult-flag file), tiny
stand-in networks (tests/preset_models.py), then the report's published-vs-measured
table; the centre baseline's scores are known by hand."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from faithbench import datasets
from faithbench.config import DATASET_KEYS, entry_params
from faithbench.report import published
from test_presets import _compose, _job

def _obj(name: str, box: tuple[int, int, int, int], difficult: int = 0) -> str:
    x0, y0, x1, y1 = box  # VOC: 1-based inclusive pixel indices
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
            f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


# image -> (width, height, objects); the image centre is inside dog (1) and bird (3),
# more than 15 px from person (1), cat (2) and dog (3); chair (2) is all "difficult".
VOC_TREE = {
    "000001": (160, 120, [("dog", (61, 41, 100, 80), 0), ("person", (1, 1, 20, 20), 0)]),
    "000002": (140, 100, [("cat", (1, 1, 30, 30), 0), ("chair", (100, 60, 140, 100), 1)]),
    "000003": (120, 160, [("bird", (51, 71, 70, 90), 0), ("dog", (1, 141, 20, 160), 0)]),
}
FLAGGED = {"000001": {"dog"}, "000002": set()}  # 000003 is not in the file: all its classes


def write_voc(root: Path) -> None:
    from PIL import Image

    from faithbench.datasets.voc2007 import VOC_CLASSES

    base = root / "VOCdevkit" / "VOC2007"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (w, h, objs) in VOC_TREE.items():
        xml = "".join(_obj(*o) for o in objs)
        (base / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size>{xml}</annotation>")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(base / "JPEGImages" / f"{name}.jpg")
    (base / "ImageSets/Main/test.txt").write_text("\n".join(VOC_TREE) + "\n")
    lines = ["\t".join([n] + ["1" if c in FLAGGED[n] else "0" for c in VOC_CLASSES]) for n in FLAGGED]
    (root / "pointing_game_ebp_voc07_difficult.txt").write_text("\n".join(lines) + "\n")


def center_expectation() -> tuple[float, float, dict[tuple[str, str], float]]:
    """The centre baseline's hits by hand: (class-mean all, class-mean difficult, hits).
    Class means as TorchRay's: over all 20 VOC classes, a class never scored counting 0."""
    hits = {("000001", "dog"): 1.0, ("000001", "person"): 0.0, ("000002", "cat"): 0.0,
            ("000003", "bird"): 1.0, ("000003", "dog"): 0.0}
    per_class: dict[str, list[float]] = {}
    hard: dict[str, list[float]] = {}
    for (img, cls), hit in hits.items():
        per_class.setdefault(cls, []).append(hit)
        if img not in FLAGGED or cls in FLAGGED[img]:
            hard.setdefault(cls, []).append(hit)
    mean = lambda d: sum(np.mean(v) for v in d.values()) / 20  # noqa: E731
    return mean(per_class), mean(hard), hits


@pytest.fixture(scope="module")
def torchray_sweep(tmp_path_factory, _empty_mlflow_db):
    """`faithbench -m experiment=torchray_pointing_voc` on the tiny tree, in a child
    process whose vgg16_voc / resnet50_voc are tiny networks (tests/preset_models.py).
    Three of the six methods keep it short: the centre (hits known by hand), gradient
    (smoothed) and RISE (its own input size); the others take the settings of one of them."""
    import shutil

    root = tmp_path_factory.mktemp("torchray")
    shutil.copy(_empty_mlflow_db, root / "mlflow.db")
    write_voc(root / "voc")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                       os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(
        [sys.executable, "-c", "import preset_models; preset_models.main()", "-m",
         "experiment=torchray_pointing_voc", f"dataset.root={root / 'voc'}",
         "method=center,saliency,rise",  # the command line narrows the sweep
         "method_params.rise.n_masks=24", "batch_size=4", "figures.grid=0"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return root, out.stdout


def _runs(root: Path):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = c.get_experiment_by_name("torchray_pointing_voc")  # the preset's own experiment
    return c, c.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'")


def test_torchray_sweep_runs_every_job_with_its_protocol(torchray_sweep):
    root, stdout = torchray_sweep
    _, runs = _runs(root)
    jobs = {(r.data.tags["model"], r.data.tags["method"]): r for r in runs}
    assert set(jobs) == {(m, me) for m in ("vgg16_voc", "resnet50_voc")
                         for me in ("center", "saliency", "rise")}
    for (model, method), r in jobs.items():
        p = r.data.params
        smooth = 0.02 if method in ("saliency", "deconvnet", "guided_backprop") else 0.0
        assert float(p["metric.pointing_game.smooth"]) == smooth
        assert p["model.fully_convolutional"] == "True" and p["target"] == "label"
        assert p["model.preprocess.resize"] == ("stretch" if method == "rise" else "shorter_side")
        assert p["model.preprocess.antialias"] == "False" and p["model.preprocess.size_rounding"] == "floor"
        assert r.data.tags["weights_id"] == f"tiny-{model}+fully_convolutional"
        assert r.data.metrics["n_samples"] == 6  # 6 (image, class) rows: chair is scored NaN
    rise = jobs[("vgg16_voc", "rise")].data.params
    assert (rise["method.n_masks"], rise["method.activation"]) == ("24", "sigmoid")
    assert "pointing_game" in stdout  # the sweep's summary table


def test_torchray_center_scores_and_difficult_subset_are_the_protocols(torchray_sweep):
    import tempfile

    import pandas as pd

    from faithbench.datasets.voc2007 import VOC_CLASSES

    root, _ = torchray_sweep
    c, runs = _runs(root)
    all_, hard, hits = center_expectation()
    for r in runs:
        if r.data.tags["method"] != "center":
            continue
        assert r.data.metrics["pointing_game"] == pytest.approx(all_)
        assert r.data.metrics["pointing_game_difficult"] == pytest.approx(hard)
        assert r.data.metrics["pointing_game_classes"] == 20  # the classes averaged
        assert r.data.metrics["pointing_game_difficult_classes"] == 20
        with tempfile.TemporaryDirectory() as d:
            df = pd.read_parquet(c.download_artifacts(r.info.run_id, "samples.parquet", d))
        for _, row in df.iterrows():
            img, cls = row["image_id"].split("/")[-1], VOC_CLASSES[int(row["target"])]
            if cls == "chair":  # only "difficult" boxes: not scored
                assert math.isnan(row["pointing_game"])
                continue
            assert row["pointing_game"] == hits[(img, cls)], (img, cls)
            in_subset = img not in FLAGGED or cls in FLAGGED[img]
            assert math.isnan(row["pointing_game_difficult"]) != in_subset, (img, cls)
        # the point is not a score: a plain mean, not a class mean over absent classes
        for key in ("pointing_game_y", "pointing_game_x"):
            assert r.data.metrics[key] == pytest.approx(df[key].dropna().mean())
            assert f"{key}_classes" not in r.data.metrics


def test_report_puts_published_beside_measured(torchray_sweep, tmp_path):
    import pandas as pd

    from faithbench.report.build import Options, build
    from faithbench.report.write import write

    root, _ = torchray_sweep
    _, runs = _runs(root)
    rep = build(Options(tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
                        experiments=["torchray_pointing_voc"], out=tmp_path / "rep",
                        formats=("md", "csv"), figures=False, log_mlflow=False, n_resamples=20))
    logged = {(r.data.tags["model"], r.data.tags["method"], k): v
              for r in runs for k, v in r.data.metrics.items()}
    cfg = _compose(["experiment=torchray_pointing_voc"])
    block = published.from_block(OmegaConf.to_container(cfg.published))
    sections = {s.board.model: s for s in rep.sections}
    assert set(sections) == {"vgg16_voc", "resnet50_voc"}
    for model, s in sections.items():
        pub = s.published
        assert len(pub) == 18  # every published number, measured or not
        ran = pub["method"].isin(["center", "saliency", "rise"])
        assert not pub["measured"][ran].isna().any() and pub["measured"][~ran].isna().all()
        for _, row in pub.iterrows():
            ref = block[(block.model == model) & (block.method == row["method"]) & (block.key == row["key"])]
            assert row["published"] == ref["published"].item()
            if row["method"] not in ("center", "saliency", "rise"):
                continue
            assert row["measured"] == pytest.approx(logged[(model, row["method"], row["key"])])
            assert row["diff"] == pytest.approx(row["measured"] - row["published"])
            assert row["in_ci"] == (row["ci_low"] <= row["published"] <= row["ci_high"])
    write(rep)
    csv = pd.read_csv(tmp_path / "rep" / "published.csv")
    assert len(csv) == 36 and {"published", "measured", "diff"} <= set(csv.columns)
    assert csv["measured"].notna().sum() == 12
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "TorchRay docs/pointing.csv" in md and "0.866" in md


def test_missing_difficult_file_says_where_to_find_it(tmp_path):
    from faithbench.errors import ConfigError
    from faithbench.models.torchray import CAFFE

    write_voc(tmp_path)
    cfg = _job("torchray_pointing_voc", ["method=center", f"dataset.root={tmp_path}"])
    params = entry_params(cfg.dataset, DATASET_KEYS)
    assert datasets.build("voc2007", CAFFE, **params)[0].hard_classes is not None
    (tmp_path / "pointing_game_ebp_voc07_difficult.txt").unlink()
    with pytest.raises(ConfigError, match="torchray/benchmark.*difficult_file=null"):
        datasets.build("voc2007", CAFFE, **params)


@pytest.mark.slow
def test_torchray_sweep_runs_the_excitation_and_extremal_rows(tmp_path, _empty_mlflow_db):
    """The three rows TorchRay's table adds, through the preset's per-network layer tables
    (pointed at the tiny network's modules) and a 2-step extremal perturbation."""
    import shutil

    shutil.copy(_empty_mlflow_db, tmp_path / "mlflow.db")
    write_voc(tmp_path / "voc")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                       os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    methods = ("excitation_backprop", "contrastive_excitation_backprop", "extremal_perturbation")
    out = subprocess.run(
        [sys.executable, "-c", "import preset_models; preset_models.main()", "-m",
         "experiment=torchray_pointing_voc", f"dataset.root={tmp_path / 'voc'}",
         "model=vgg16_voc", f"method={','.join(methods)}",
         "torchray.excitation_layer.vgg16_voc=features.2",
         "method_params.extremal_perturbation.max_iter=2", "batch_size=4", "figures.grid=0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    _, runs = _runs(tmp_path)
    jobs = {r.data.tags["method"]: r.data for r in runs}
    assert set(jobs) == set(methods)
    ebp, cebp, ep = (jobs[m].params for m in methods)
    assert ebp["method.layer"] == cebp["method.layer"] == "features.2"
    assert cebp["method.contrast_layer"] == "classifier.4"  # the preset's VGG16 relu7
    assert ep["method.areas"] == "[0.025, 0.05, 0.1, 0.2]" and ep["method.smooth"] == "0.09"
    for data in jobs.values():
        assert data.metrics["n_samples"] == 6 and 0 <= data.metrics["pointing_game"] <= 1
