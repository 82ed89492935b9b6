"""Configs and registries agree: method and metric nodes are generated from the registered
functions (no YAML copies), model and dataset files name themselves, and the run keys of
unchanged configs are the keys their runs were logged under before the nodes were generated."""

from __future__ import annotations

import inspect
import re
from importlib import resources

import pytest
import yaml
from hydra import compose, initialize_config_module

from faithbench import datasets, methods, metrics, models
from faithbench.cli import compose as cli_compose
from faithbench.config import DATASET_KEYS, entry_params, run_key
from faithbench.run import apply_method_params

FILE_REGISTRIES = {"dataset": datasets.DATASETS, "model": models.MODELS}
CONF = resources.files("faithbench.conf")
DATA_ARGS = {"method": 3, "metric": 5}  # (model, x, target) / (model, x, heatmap, target, batch)


def _files(group: str) -> dict[str, dict]:
    d = CONF / group
    return {p.name[:-5]: yaml.safe_load(p.read_text()) or {}
            for p in d.iterdir() if p.name.endswith(".yaml")} if d.is_dir() else {}


def _hydra(overrides: list[str]):
    """Hydra's own compose, as a user of ``faithbench.conf`` without the CLI calls it."""
    with initialize_config_module("faithbench.conf", version_base="1.3"):
        return compose("config", overrides=overrides)


def _expected(fn, skip: int) -> dict:
    """The signature defaults as a config holds them: tuples become lists."""
    def plain(v):
        return [plain(e) for e in v] if isinstance(v, (tuple, list)) else v
    return {k: plain(p.default) for k, p in list(inspect.signature(fn).parameters.items())[skip:]}


def _same(a, b) -> bool:
    """Equal, and of the same types all the way down (15 and 15.0 hash differently)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("name", methods.names())
def test_each_method_node_is_its_signature(name):
    """``method=<name>`` composes the registered function's parameters with their
    defaults, in signature order, and nothing else."""
    node = entry_params(_hydra([f"method={name}"]).method, drop=())
    assert node.pop("name") == name
    expected = _expected(methods.get(name).fn, DATA_ARGS["method"])
    assert list(node) == list(expected)
    for k, v in expected.items():
        assert _same(node[k], v), f"method.{k}: composed {node[k]!r}, default {v!r}"


def test_every_metric_node_is_its_signature():
    cfg = _hydra([])
    # and metric.callable: a metric named by its module:function path (faithbench.outside)
    assert sorted(cfg.metric) == sorted([*metrics.names(), "callable"])
    for name in metrics.names():
        node = entry_params(cfg.metric[name], drop=())
        assert node.pop("name") == name
        expected = _expected(metrics.get(name).fn, DATA_ARGS["metric"])
        assert list(node) == list(expected), name
        for k, v in expected.items():
            assert _same(node[k], v), f"metric.{name}.{k}: composed {node[k]!r}, default {v!r}"


def test_no_method_or_metric_is_written_down_twice():
    """The YAML copies and config.yaml's hand-kept metric list are gone."""
    assert not (CONF / "method").is_dir() and not (CONF / "metric").is_dir()
    main = (CONF / "config.yaml").read_text()
    assert not re.search(r"metric@", main)
    for name in metrics.names():
        assert not re.search(rf"\b{name}\b", main.split("metrics:")[0]), name


@pytest.mark.parametrize("group", list(FILE_REGISTRIES))
def test_config_files_and_registry_list_the_same_names(group):
    """Every YAML file names an entry; an entry without one (the ``callable`` model) is
    composable from the node generated from its signature."""
    files, names = set(_files(group)), set(FILE_REGISTRIES[group].names())
    assert files <= names, sorted(files - names)
    for name in sorted(names - files):
        assert cli_compose([f"{group}={name}"])[group].name == name


@pytest.mark.parametrize("group", list(FILE_REGISTRIES))
def test_names_are_snake_case_and_each_file_names_itself(group):
    for name, body in _files(group).items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert body.get("name") == name, f"conf/{group}/{name}.yaml must say name: {name}"


@pytest.mark.parametrize("kind", ["method", "metric"])
def test_entry_names_are_snake_case(kind):
    for name in {"method": methods, "metric": metrics}[kind].names():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name


@pytest.mark.parametrize("group", ["model", "dataset"])
def test_yaml_keys_are_parameters_with_the_python_defaults(group):
    """What the CLI runs equals what a Python caller gets with the same defaults."""
    for name, body in _files(group).items():
        fn = FILE_REGISTRIES[group].get(name).fn
        sig = inspect.signature(fn).parameters
        skip = set(DATASET_KEYS) if group == "dataset" else {"name"}
        for key, value in body.items():
            if key in skip:
                continue
            assert key in sig, f"conf/{group}/{name}.yaml: {key!r} is not a parameter of {name}"
            default = sig[key].default
            if default is not inspect.Parameter.empty:
                if isinstance(default, tuple):
                    default = list(default)
                assert value == default, f"conf/{group}/{name}.yaml: {key}={value!r} but the default is {default!r}"


def test_every_dataset_config_has_the_runner_keys():
    for name, body in _files("dataset").items():
        for key in DATASET_KEYS:
            assert key in body, f"conf/dataset/{name}.yaml lacks {key!r}"


# Run keys computed on commit 5fa710c (the last one with conf/method/*.yaml and
# conf/metric/*.yaml) by the same code as _key below: compose the overrides, apply
# method_params as run() does, run_key() with the model's weights_id. Finished runs are
# found by this key, so these must never change for an unchanged config.
KEYS_BEFORE_GENERATED_NODES = {
    "": "e412ce0b06998f2d",
    "method=rise": "ff07e33ca5efb758",
    "experiment=quick +pair=shapes method=ablation_cam": "fbf86af01f5ab0ee",  # quick's first job
    "experiment=quick +pair=photos method=rise": "ea0a50fc655bd5ec",
    "metric.deletion.step=0.05": "826107f691b13e54",
    "method=occlusion +method_params.occlusion.window=4": "087b13c7de12793f",
    "method=smooth_grad": "45095d88b7fd7955",
    "method=integrated_gradients": "f8285ffc9cb9c345",
    "metrics=[" + ",".join([
        "abpc", "average_drop", "box_localisation", "complexity", "cue_mass",
        "cue_pointing_game", "deletion", "energy_pointing_game", "increase_in_confidence",
        "insertion", "max_box_acc", "max_sensitivity", "model_randomisation", "noise_stability",
        "pointing_game", "rotation_stability", "sparseness", "translation_stability"]) + "]":
        "93d33d88ab1daa8a",
}


def _key(overrides: list[str]) -> str:
    cfg = apply_method_params(cli_compose(overrides))
    weights = models.load(cfg.model.name, **entry_params(cfg.model)).weights_id
    return run_key(cfg, weights)


@pytest.mark.parametrize("overrides", list(KEYS_BEFORE_GENERATED_NODES))
def test_run_keys_of_unchanged_configs_are_unchanged(overrides):
    assert _key(overrides.split()) == KEYS_BEFORE_GENERATED_NODES[overrides]


def test_a_changed_parameter_changes_the_key():
    """The check above can fail: the key does follow the generated nodes."""
    assert _key(["metric.deletion.step=0.1"]) != KEYS_BEFORE_GENERATED_NODES[""]
    assert _key(["method.layer=features.3"]) != KEYS_BEFORE_GENERATED_NODES[""]
