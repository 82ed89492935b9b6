"""faithbench.evaluate and faithbench.leaderboard: the CLI's numbers from Python."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import faithbench
from faithbench.cli import compose
from faithbench.errors import ConfigError, IncompatibleError
from faithbench.run import run

METRICS = ["deletion", "pointing_game"]
N, STEP = 3, 0.1  # photos scored; deletion step (fewer forwards than the default)


def _cli_frame(out_dir: Path, method: str) -> pd.DataFrame:
    """Per-sample rows of the CLI run of ``method`` on the first photos, from its parquet."""
    cfg = compose(["model=efficientnet_lite0", "dataset=photos", f"dataset.limit={N}",
                   f"method={method}", f"metrics=[{','.join(METRICS)}]", "device=cpu",
                   f"metric.deletion.step={STEP}", f"out_dir={out_dir}", "figures.grid=0",
                   "cache=false", f"tracking.uri=sqlite:///{out_dir}/mlflow.db"])
    run(cfg)
    parts = sorted(out_dir.glob("runs/*/part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


@pytest.fixture(scope="module")
def photos_frame() -> pd.DataFrame:
    return faithbench.evaluate("efficientnet_lite0", "photos", methods=["grad_cam", "saliency"],
                               metrics={"deletion": {"step": STEP}, "pointing_game": {}},
                               limit=N, device="cpu")


def test_evaluate_equals_the_cli_run(photos_frame, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow puts a new store's artifacts under ./mlruns
    for method in ("grad_cam", "saliency"):
        cli = _cli_frame(tmp_path / method, method).sort_values("id").reset_index(drop=True)
        ours = photos_frame[photos_frame["method"] == method].sort_values("id").reset_index(drop=True)
        assert list(ours["id"]) == list(cli["id"]) and len(cli) == N
        for col in ("target", "pred", "correct"):
            assert (ours[col].to_numpy() == cli[col].to_numpy()).all(), col
        for col in ("deletion", "pointing_game"):
            np.testing.assert_allclose(ours[col].to_numpy(float), cli[col].to_numpy(float),
                                       atol=1e-6, rtol=0)
        np.testing.assert_allclose(np.stack(ours["deletion_curve"]), np.stack(cli["deletion_curve"]),
                                   atol=1e-6, rtol=0)


def test_leaderboard_equals_the_report(workdir):
    """The shapes pair through the CLI and the report, and through evaluate and
    leaderboard: the same per-sample numbers, the same cells and paired tests."""
    from faithbench.report.build import Options, build

    methods, mets = ["grad_cam", "random"], ["deletion", "pointing_game"]
    for m in methods:
        run(compose([f"method={m}", "dataset.limit=6", f"metrics=[{','.join(mets)}]",
                     "device=cpu", "figures.grid=0"]))
    rep = build(Options(tracking_uri=f"sqlite:///{workdir}/mlflow.db", figures=False,
                        n_resamples=200), scratch=workdir / "scratch")
    frame = faithbench.evaluate("shapes_cnn", "shapes", methods=methods, metrics=mets, limit=6,
                                device="cpu", dataset="shapes")
    ref = rep.sections[0]
    for g in ref.board.groups:  # per sample: the CLI's logged samples.parquet
        ours = frame[frame["method"] == g.method].reset_index(drop=True)
        assert list(ours["id"]) == list(g.frame["id"])
        for col in ("target", "pred", "deletion", "pointing_game"):
            np.testing.assert_allclose(ours[col].to_numpy(float), g.frame[col].to_numpy(float),
                                       atol=1e-6, rtol=0, err_msg=f"{g.method} {col}")
    board = faithbench.leaderboard(frame, n_resamples=200)
    cols = ["label", "key", "mean", "ci_low", "ci_high", "n", "rank", "best"]
    got = board.cells[cols].sort_values(["label", "key"]).reset_index(drop=True)
    want = ref.board.cells[cols].sort_values(["label", "key"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-9, rtol=0)
    pd.testing.assert_frame_equal(board.tests.reset_index(drop=True),
                                  ref.tests.reset_index(drop=True), check_exact=False, atol=1e-9)
    assert list(board.table.index) == list(ref.board.rows.sort_values("mean_rank")["label"])
    assert board.table.loc["grad_cam", "deletion"] == pytest.approx(
        frame.loc[frame["method"] == "grad_cam", "deletion"].to_numpy(float).mean(), abs=1e-12)
    assert "grad_cam" in board.markdown() and len(board.tests) > 0


def test_bare_module_tensor_images_and_a_callable_method(tiny_cnn, images, caplog):
    def corner(model, x, target, side=8):  # any callable (model, x, target) -> [B,H,W]
        m = torch.zeros(x.shape[0], *x.shape[-2:])
        m[:, :side, :side] = 1.0
        return m

    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])] * 2 + [torch.tensor([[16.0, 16.0, 32.0, 32.0]])] * 2
    with caplog.at_level("INFO", logger="faithbench"):
        df = faithbench.evaluate(tiny_cnn, images, [0, 1, 2, 3],
                                 methods={"corner": corner, "gc": ("grad_cam", {"layer": "features.3"}),
                                          "corner4": (corner, {"side": 4})},
                                 metrics={"pointing_game": {"tolerance": 1.0}}, boxes=boxes,
                                 preprocess={"size": 32}, device="cpu")
    assert "CAM layer 'features'" in caplog.text  # found and said
    assert len(df) == 12 and set(df["method"]) == {"corner", "gc", "corner4"}
    assert df.attrs["cam_layer"] == "features"
    hits = df[df["method"] == "corner"]["pointing_game"].tolist()
    assert hits == [1.0, 1.0, 0.0, 0.0]  # the corner map's maximum lies in the first boxes only


def test_bad_input_is_named_before_computing(tiny_cnn, images):
    run = dict(preprocess={"size": 32}, device="cpu")
    with pytest.raises(ConfigError, match="grad_cm"):
        faithbench.evaluate(tiny_cnn, images, [0] * 4, methods=["grad_cm"], **run)
    with pytest.raises(ConfigError, match="delition"):
        faithbench.evaluate(tiny_cnn, images, [0] * 4, metrics=["delition"], **run)
    with pytest.raises(ConfigError, match=r"expected \[4\]"):
        faithbench.evaluate(tiny_cnn, images, [0] * 3, **run)
    with pytest.raises(ConfigError, match=r"\[N,3,H,W\]"):
        faithbench.evaluate(tiny_cnn, images[:, :1], [0] * 4, **run)
    with pytest.raises(ConfigError, match="needs boxes"):
        faithbench.evaluate(tiny_cnn, images, [0] * 4, metrics=["pointing_game"], **run)
    calls = []

    def wrong(model, x, target):
        calls.append(len(x))
        return torch.zeros(x.shape[0], 8, 8)

    with pytest.raises(ConfigError, match=r"shape \(1, 8, 8\).*expected a float tensor of shape \(1, 32, 32\)"):
        faithbench.evaluate(tiny_cnn, images, [0] * 4, methods={"w": wrong}, **run)
    assert calls == [1]  # caught on one sample


def test_image_paths_with_boxes_equal_the_dataset():
    """Photos given as paths with their labels and boxes in original pixels: the same
    samples, hence the same numbers, as the photos dataset reader (2 photos, a cheap
    method and the pointing game)."""
    from faithbench import datasets, models
    from faithbench.datasets.photos import load_entries
    from faithbench.labels import synset_to_index

    entries, index = load_entries()[:2], synset_to_index()
    paths = [str(e["file"]) for e in entries]
    targets = [index[e["accept"][0]] for e in entries]
    boxes = [(torch.tensor([o["box"] for o in e["objects"]], dtype=torch.float32),
              torch.tensor([index[o["labels"][0]] for o in e["objects"]])) for e in entries]
    spec = models.load("efficientnet_lite0")
    opts = dict(methods=["center"], metrics=["pointing_game", "box_localisation"], device="cpu")
    ours = faithbench.evaluate(spec, paths, targets, boxes=boxes, **opts)
    ref = faithbench.evaluate(spec, datasets.build("photos", spec.preprocess), limit=2, **opts)
    for col in ("target", "pred", "pointing_game", "box_localisation"):
        np.testing.assert_array_equal(ours[col].to_numpy(), ref[col].to_numpy(), err_msg=col)
    from PIL import Image

    pil = faithbench.evaluate(spec, [Image.open(p) for p in paths], targets, boxes=boxes, **opts)
    np.testing.assert_array_equal(pil["pointing_game"].to_numpy(), ref["pointing_game"].to_numpy())


def test_tracked_runs_are_read_by_the_report(workdir, tiny_cnn, images):
    from faithbench.report.build import Options, build

    boxes = [torch.tensor([[0.0, 0.0, 16.0, 16.0]])] * 4
    frame = faithbench.evaluate(tiny_cnn, images, [0, 1, 2, 3],
                                methods={"gc": "grad_cam", "random": "random"},
                                metrics=["deletion", "pointing_game"], boxes=boxes,
                                preprocess={"size": 32}, device="cpu", tracking=True,
                                figures_grid=2, out_dir=workdir / "out")
    rep = build(Options(figures=False, n_resamples=100), scratch=workdir / "scratch")
    assert not rep.problems  # the logged means equal the means of the logged samples
    s = rep.sections[0]
    assert sorted(s.board.labels) == ["gc", "random"] and s.controls == {"random"}
    board = faithbench.leaderboard(frame, n_resamples=100)
    pd.testing.assert_frame_equal(board.cells.sort_values(["label", "key"]).reset_index(drop=True),
                                  s.board.cells.sort_values(["label", "key"]).reset_index(drop=True))
    with pytest.raises(ConfigError, match=r"torch.int64.*expected a float tensor"):
        faithbench.evaluate(tiny_cnn, images, [0] * 4, device="cpu", preprocess={"size": 32},
                            methods={"ints": lambda m, x, t: torch.zeros(len(x), 32, 32).long()})
    with pytest.raises(ConfigError, match="grad_cm"):  # before timm looks for weights
        faithbench.evaluate("timm", "photos", methods=["grad_cm"], device="cpu")
    with pytest.raises(IncompatibleError, match="'custom' classes but dataset 'shapes'"):
        faithbench.evaluate(tiny_cnn, "shapes", device="cpu", preprocess={"size": 64})
    names = ["circle", "square", "triangle", "star", "cross"]
    df = faithbench.evaluate(tiny_cnn, "shapes", methods=["center"], metrics=["deletion"], limit=2,
                             device="cpu", preprocess={"size": 64},
                             model_options={"label_space": "shapes", "class_names": names})
    assert len(df) == 2 and df["dataset"].iloc[0] == "shapes"


def test_preprocess_overrides_a_registry_model(tiny_cnn):
    from faithbench.api_inputs import resolve_model

    spec = resolve_model("shapes_cnn", torch.device("cpu"), True, {"resize": "stretch"}, {})
    assert spec.preprocess.resize == "stretch" and spec.preprocess.size == 64  # the rest kept
    bare = resolve_model(tiny_cnn, torch.device("cpu"), False, None, {"cam_layer": "features.3"})
    assert bare.cam_layer == "features.3" and bare.preprocess.size == 224  # the defaults
