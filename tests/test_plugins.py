"""Outside code: entry-point plugins, dotted paths, their identity in the keys, and
their contract checked on one sample before a run opens."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from mlflow.tracking import MlflowClient

from faithbench import models
from faithbench.config import store_nodes
from faithbench.errors import ConfigError
from faithbench.outside import display_name
from faithbench.run import apply_method_params, prepare, run

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "faithbench-example-plugin"
FAST = ["dataset.limit=2", "batch_size=2", "figures.grid=0", "device=cpu"]

# A module a researcher keeps beside a notebook: two methods, a metric, a dataset.
USER_MODULE = '''
import torch
from faithbench.datasets.shapes import shapes
from faithbench.params import Positive
from faithbench.types import BenchDataset


def brightness(model, x, target, alpha: float = 1.0):
    """|x| summed over channels, times alpha."""
    return alpha * x.abs().sum(1)


def centre(model, x, target, width: int = 8):
    """A centred square of ones."""
    h, w = x.shape[-2:]
    out = torch.zeros(x.shape[0], h, w, device=x.device)
    out[:, h // 2 - width // 2 : h // 2 + width // 2, w // 2 - width // 2 : w // 2 + width // 2] = 1
    return out


def positive_alpha(model, x, target, alpha: Positive = 1.0):
    return alpha * x.sum(1)


def needs_beta(model, x, target, beta: float):
    return beta * x.sum(1)


def flat_map(model, x, target):
    return x.sum((1, 2, 3))  # [B]: the wrong shape


def peak(model, x, heatmap, target, batch):
    """The largest value of each map."""
    return {"peak": heatmap.flatten(1).amax(1)}


def low(model, x, heatmap, target, batch):
    """The smallest value of each map."""
    return {"low": heatmap.flatten(1).amin(1)}


def scalar_metric(model, x, heatmap, target, batch):
    return {"scalar_metric": heatmap.mean()}


def few_shapes(preprocess, n: int = 4):
    return shapes(preprocess, n=n, size=64)


def not_a_dataset(preprocess):
    return [torch.zeros(3, 8, 8)]


class Tensors(BenchDataset):
    label_space = "shapes"

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return torch.zeros(3, 8, 8)


def not_samples(preprocess):
    return Tensors()
'''


def _compose(overrides: list[str]):
    store_nodes()
    with initialize_config_module("faithbench.conf", version_base="1.3"):
        return compose("config", overrides=overrides)


def _cli(args: list[str], cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def user_module(workdir: Path, monkeypatch) -> Path:
    """``my_methods.py`` in the working directory, not yet imported by this process."""
    monkeypatch.delitem(sys.modules, "my_methods", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = workdir / "my_methods.py"
    path.write_text(USER_MODULE)
    return path


# -- entry points ------------------------------------------------------------------------


def _install_example(workdir: Path) -> Path:
    """pip installs the example package into a target directory (offline), building
    from a copy so that the source tree is left as it was."""
    target, source = workdir / "site", workdir / "example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip = _cli(["-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                "--no-index", "--target", str(target), str(source)], cwd=workdir)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return target


KEYS = '''
import json, pathlib
from faithbench import methods
from faithbench.cli import compose
from faithbench.run import apply_method_params, prepare

def keys():
    cfg = apply_method_params(compose(["method=var_grad", "method.n_samples=2", "device=cpu",
                                       "metrics=[pointing_game]", "dataset.limit=2"]))
    job = prepare(cfg)
    return [job.key, job.scorer.cache.dir.name]

entry = methods.get("var_grad")
before = keys()
src = pathlib.Path(entry.fn.__wrapped__.__code__.co_filename)
src.write_text(src.read_text() + "\\n# edited\\n")
print(json.dumps({"origin": entry.origin, "before": before, "after": keys()}))
'''


def test_example_plugin_is_discovered_and_its_edit_changes_the_keys(workdir):
    """A fresh process finds the installed example through importlib.metadata entry points;
    editing its installed source changes the run key and the heatmap cache key."""
    target = _install_example(workdir)
    p = _cli(["-c", KEYS], workdir, target)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["origin"] == "faithbench-example-plugin 0.1.0"
    assert got["before"][0] != got["after"][0] and got["before"][1] != got["after"][1]


def test_example_plugin_is_installed_discovered_swept_and_ranked(workdir):
    """pip installs the example into a target directory; a fresh process finds it through
    importlib.metadata entry points, sweeps it with two built-ins and ranks it."""
    target = _install_example(workdir)
    listed = _cli(["-m", "faithbench", "list", "methods"], workdir, target)
    assert "var_grad" in listed.stdout and "[faithbench-example-plugin 0.1.0]" in listed.stdout
    assert "grad_cam                     [built-in]" in listed.stdout
    sweep = _cli(["-m", "faithbench", "-m", "method=var_grad,grad_cam,saliency",
                  "+method_params.var_grad.n_samples=2", "dataset.limit=6", "batch_size=6",
                  "metrics=[deletion]", "metric.deletion.step=0.25", "figures.grid=0"],
                 workdir, target)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    report = _cli(["-m", "faithbench", "report", "--no-figures", "--no-mlflow", "--control=",
                   "--win=", "--formats", "csv,md", "--out", "rep"], workdir, target)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = list(csv.DictReader((workdir / "rep" / "leaderboard.csv").open()))
    assert {"var_grad", "grad_cam", "saliency"} <= {r["method"] for r in rows}, rows
    md = (workdir / "rep" / "report.md").read_text()
    assert "var_grad" in md and "grad_cam" in md
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("faithbench").experiment_id])
    assert sorted(r.data.tags["method"] for r in runs) == ["grad_cam", "saliency", "var_grad"]
    assert {r.info.status for r in runs} == {"FINISHED"}


def _fake_dist(site: Path, name: str, module: str, source: str, entries: dict[str, str],
               group: str = "methods", more: str = "") -> None:
    """A distribution as pip leaves it: the module and its dist-info with entry points
    (``more``: further groups, as entry_points.txt lines)."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "top_level.txt").write_text(module + "\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[faithbench.{group}]\n{lines}\n{more}")


PROBE = '''
import json, sys
from faithbench import methods
out = {}
for name in sys.argv[1:]:
    try:
        e = methods.get(name)
        out[name] = {"origin": e.origin, "layer": e.info.needs_layer,
                     "seed": sorted(e.info.injected)}
    except Exception as err:
        out[name] = {"error": f"{type(err).__name__}: {err}"}
from faithbench.cli import compose
from faithbench.config import to_dict
out["composed"] = [compose(["method=saliency"]).method.name, compose([]).method.name]
cfg = compose(["model=tiny_model", "model.width=2", "dataset=tiny_data", "dataset.n=3"])
out["nodes"] = [to_dict(cfg.model), to_dict(cfg.dataset)]
print(json.dumps(out))
'''


def test_plugin_clashes_and_broken_plugins_are_errors_naming_both_providers(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    plain = "def f(model, x, target, seed=None):\n    return x.sum(1)\n"
    _fake_dist(site, "plug-a", "plug_a", plain, {"grad_cam": "plug_a:f", "twin": "plug_a:f"})
    _fake_dist(site, "plug-b", "plug_b", plain, {"twin": "plug_b:f", "gone": "no_such_mod:f"})
    _fake_dist(site, "plug-c", "plug_c", '''
        from faithbench.methods import register

        @register(context=("layer",), cost="backward")
        def my_cam(model, x, target, layer=None):
            return x.sum(1)

        def tiny_data(preprocess, n: int = 2):
            from faithbench.datasets.shapes import shapes
            return shapes(preprocess, n=n, size=64)

        def tiny_model(width: int = 1):
            from faithbench.models.shapes_cnn import shapes_cnn
            return shapes_cnn()
        ''', {"cam_plus": "plug_c:my_cam"},
        more="[faithbench.datasets]\ntiny_data = plug_c:tiny_data\n"
             "[faithbench.models]\ntiny_model = plug_c:tiny_model\n")
    p = _cli(["-c", PROBE, "grad_cam", "twin", "gone", "cam_plus", "saliency"], tmp_path, site)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout)
    assert "built-in" in got["grad_cam"]["error"] and "plug-a 0.1" in got["grad_cam"]["error"]
    twin = got["twin"]["error"]
    assert "plug-a 0.1" in twin and "plug-b 0.1" in twin and "registered twice" in twin
    assert "'gone'" in got["gone"]["error"] and "no_such_mod:f" in got["gone"]["error"]
    assert "ModuleNotFoundError" in got["gone"]["error"]
    # a plugin that registers itself keeps its metadata, under the entry point's name
    assert got["cam_plus"] == {"origin": "plug-c 0.1", "layer": True, "seed": ["layer"]}
    assert got["saliency"]["origin"] == "built-in"  # broken plugins block nothing else
    assert got["composed"] == ["saliency", "grad_cam"]  # grad_cam composes, selecting it errs
    # plugin models and datasets get nodes from their signatures (no YAML)
    assert got["nodes"] == [{"name": "tiny_model", "width": 2},
                            {"name": "tiny_data", "n": 3, "shard": 0, "num_shards": 1,
                             "limit": None, "subset_seed": None}]
    listed = _cli(["-m", "faithbench", "list", "methods"], tmp_path, site)
    assert listed.returncode == 0 and "[broken]" in listed.stdout
    assert re.search(r"cam_plus +\[plug-c 0.1\] needs_layer=True", listed.stdout), listed.stdout


# -- dotted paths ------------------------------------------------------------------------


def test_dotted_path_method_runs_with_its_parameters(user_module):
    cfg = _compose(["method=callable", "method.fn=my_methods:brightness", "method.alpha=0.3",
                    "metrics=[pointing_game]", *FAST])
    job = prepare(cfg)
    assert job.identity["method"] == "my_methods:brightness"
    assert job.scorer.method_params == {"alpha": 0.3}
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(job.scorer.method_fn(None, x, None, **job.scorer.method_params),
                          0.3 * x.sum(1))
    res = run(cfg)
    assert res["n_samples"] == 2 and "pointing_game" in res
    labelled = prepare(_compose(["method=callable", "method.fn=my_methods:brightness",
                                 "method.label=mine", *FAST]))
    assert labelled.identity["method"] == "mine" and labelled.name.endswith("/mine/shapes")
    # beside built-ins in one sweep: the function given through the per-method table
    raw = _compose(["method=callable", "+method_params.callable.fn=my_methods:centre",
                    "metrics=[pointing_game]", *FAST])
    assert display_name(raw.method, raw.method_params) == "my_methods:centre"
    assert prepare(apply_method_params(raw)).identity["method"] == "my_methods:centre"


def test_dotted_path_sweep_gives_one_leaderboard_row_per_function(user_module):
    out = _cli(["-m", "faithbench", "-m", "method=callable",
                "method.fn=my_methods:brightness,my_methods:centre",
                "metrics=[pointing_game,callable]", "metric.callable.fn=my_methods:peak",
                "metric.callable.higher_is_better=true", *FAST], user_module.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "my_methods:brightness" in out.stdout and "my_methods:centre" in out.stdout
    client = MlflowClient(f"sqlite:///{user_module.parent / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("faithbench").experiment_id])
    assert sorted(r.data.tags["method"] for r in runs) == ["my_methods:brightness",
                                                           "my_methods:centre"]
    centre = next(r for r in runs if r.data.tags["method"] == "my_methods:centre")
    assert centre.data.metrics["peak"] == 1.0  # the metric named by its path ran on its maps


def test_two_dotted_path_metrics_in_one_run(user_module):
    cfg = _compose(["metrics=[callable,second]", "metric.callable.fn=my_methods:peak",
                    "metric.callable.higher_is_better=true",
                    '+metric.second={name: callable, fn: "my_methods:low", '
                    'higher_is_better: false}', *FAST])
    job = prepare(apply_method_params(cfg))
    assert [(m.name, m.info.higher_is_better) for m in job.scorer.metrics] == [
        ("peak", True), ("low", False)]


def test_dotted_path_dataset_and_its_parameters(user_module):
    cfg = _compose(["dataset=callable", "dataset.fn=my_methods:few_shapes", "dataset.n=3",
                    "metrics=[pointing_game]", "dataset.limit=null", "figures.grid=0",
                    "device=cpu"])
    job = prepare(cfg)
    assert len(job.indices) == 3 and job.identity["dataset"] == "my_methods:few_shapes"


@pytest.mark.parametrize("overrides,message", [
    (["method.fn=my_methods:brightness", "method.alhpa=1"],
     r"has no parameter 'alhpa'. Valid parameters: alpha"),
    (["method.fn=my_methods:needs_beta"], r"missing required parameter 'beta'"),
    (["method.fn=my_methods:positive_alpha", "method.alpha=-1"],
     r"method 'my_methods:positive_alpha': alpha=-1 is out of range; valid: \(0, inf\)"),
    (["method.fn=no_such_module:f"],
     r"'no_such_module:f': cannot import module 'no_such_module': ModuleNotFoundError"),
    (["method.fn=my_methods:brightnes"], r"has no attribute 'brightnes'. Did you mean 'brightness'"),
    ([], r"method=callable needs the function: set method.fn=module:function"),
    (["method.fn=my_methods:flat_map"],
     r"returned a torch.float32 tensor of shape \(1,\) on cpu; expected a float tensor of "
     r"shape \(1, 64, 64\)"),
    (["method.fn=my_methods:brightness", "metrics=[callable]",
      "metric.callable.fn=my_methods:scalar_metric", "metric.callable.higher_is_better=false"],
     r"metric 'scalar_metric' output 'scalar_metric' is \(\); expected a tensor \[1\]"),
    (["method.fn=my_methods:brightness", "metrics=[callable]", "metric.callable.fn=my_methods:peak"],
     r"set higher_is_better=true\|false"),
    (["method.fn=my_methods:brightness", "dataset=callable", "dataset.fn=my_methods:not_samples"],
     r"dataset item: item 0 is a Tensor; expected a faithbench.types.Sample"),
    (["method.fn=my_methods:brightness", "dataset=callable",
      "dataset.fn=my_methods:not_a_dataset"],
     r"dataset 'my_methods:not_a_dataset' returned a list; expected a "
     r"faithbench.types.BenchDataset"),
])
def test_outside_code_errors_before_any_run_opens(user_module, overrides, message):
    cfg = _compose(["method=callable", "metrics=[pointing_game]", *FAST, *overrides])
    with pytest.raises(ConfigError, match=message):
        run(cfg)
    assert not (user_module.parent / "faithbench_out" / "runs").exists()  # no run opened


# -- identity in the keys ----------------------------------------------------------------


def test_editing_outside_source_changes_run_key_and_cache_key(user_module):
    overrides = ["method=callable", "method.fn=my_methods:brightness", "metrics=[pointing_game]",
                 *FAST]
    before = prepare(_compose(overrides))
    again = prepare(_compose(overrides))
    assert (again.key, again.scorer.cache.dir) == (before.key, before.scorer.cache.dir)
    user_module.write_text(USER_MODULE.replace("return alpha * x.abs().sum(1)",
                                               "return 2 * alpha * x.abs().sum(1)"))
    after = prepare(_compose(overrides))
    assert after.key != before.key
    assert after.identity["faithbench.group_key"] != before.identity["faithbench.group_key"]
    assert after.scorer.cache.dir != before.scorer.cache.dir
    x = torch.ones(1, 3, 4, 4)  # the edited code is the code that runs (module reloaded)
    assert after.scorer.method_fn(None, x, None, alpha=1.0).max() == 6.0


def test_builtin_keys_are_unchanged_by_the_plugin_machinery(workdir):
    """Run keys and cache folders of built-in jobs, as computed before outside code
    entered the keys (faithbench 876dbcf^)."""
    cfg = apply_method_params(_compose(["method=saliency", "metrics=[deletion,pointing_game]",
                                        "device=cpu"]))
    job = prepare(cfg)
    assert job.key == "1c87306258e42e38"
    assert job.identity["faithbench.group_key"] == "7dc51d3f3a4ec759"
    assert job.scorer.cache.dir.name == "a28efc1f06ffa1c15850-f32"


# -- models: open nodes and the logits check (a stand-in for a factory-path model entry) --


def test_model_entry_with_kwargs_takes_extra_keys_and_is_checked(workdir):
    (workdir / "my_models.py").write_text(textwrap.dedent('''
        from torch import nn
        from faithbench.models.shapes_cnn import shapes_cnn

        class DropLast(nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net(x)[:, :-1]

        def wrong_classes(width=None):
            spec = shapes_cnn()
            spec.model = DropLast(spec.model)
            return spec
        '''))

    def fn_model(fn: str, **kwargs):
        from faithbench.plugins import load_object

        return load_object(fn, "model")(**kwargs)

    models.register("fn_model_test", label_space="shapes")(fn_model)
    try:
        cfg = _compose(["model=fn_model_test", "model.fn=my_models:wrong_classes",
                        "model.width=3", "method=saliency", "metrics=[pointing_game]", *FAST])
        assert cfg.model.width == 3  # an open node: the factory's own keyword arguments
        with pytest.raises(ConfigError, match=r"logits of shape \(1, 4\); expected \(1, 5\)"):
            prepare(cfg)
    finally:
        models.MODELS._entries.pop("fn_model_test")


def test_dataset_entry_without_yaml_gets_a_node_with_the_shared_keys(workdir):
    from faithbench import datasets
    from faithbench.datasets.shapes import shapes

    def tiny_shapes(preprocess, n: int = 5):
        return shapes(preprocess, n=n, size=64)

    datasets.register("tiny_shapes_test", label_space="shapes")(tiny_shapes)
    try:
        cfg = _compose(["dataset=tiny_shapes_test", "dataset.n=3", "dataset.limit=2"])
        assert dict(cfg.dataset) == {"name": "tiny_shapes_test", "n": 3, "shard": 0,
                                     "num_shards": 1, "limit": 2, "subset_seed": None}
        with pytest.raises(Exception, match="nn"):  # a closed node: a typo is refused
            _compose(["dataset=tiny_shapes_test", "dataset.nn=3"])
        cfg = _compose(["dataset=tiny_shapes_test", "dataset.n=3", "metrics=[pointing_game]",
                        *FAST[1:]])
        assert len(prepare(apply_method_params(cfg)).indices) == 3
    finally:
        datasets.DATASETS._entries.pop("tiny_shapes_test")
