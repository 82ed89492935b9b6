"""Config files and registries agree: one snake_case name per entry, everywhere."""

from __future__ import annotations

import inspect
import re
from importlib import resources

import pytest
import yaml

from faithbench import datasets, methods, metrics, models
from faithbench.config import DATASET_KEYS

REGISTRIES = {"method": methods.METHODS, "metric": metrics.METRICS,
              "dataset": datasets.DATASETS, "model": models.MODELS}
CONF = resources.files("faithbench.conf")


def _files(group: str) -> dict[str, dict]:
    d = CONF / group
    return {p.name[:-5]: yaml.safe_load(p.read_text()) or {}
            for p in d.iterdir() if p.name.endswith(".yaml")} if d.is_dir() else {}


@pytest.mark.parametrize("group", list(REGISTRIES))
def test_config_files_and_registry_list_the_same_names(group):
    assert sorted(_files(group)) == REGISTRIES[group].names()


@pytest.mark.parametrize("group", list(REGISTRIES))
def test_names_are_snake_case_and_each_file_names_itself(group):
    for name, body in _files(group).items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert body.get("name") == name, f"conf/{group}/{name}.yaml must say name: {name}"


@pytest.mark.parametrize("group", ["method", "metric", "model", "dataset"])
def test_yaml_keys_are_parameters_with_the_python_defaults(group):
    """What the CLI runs equals what a Python caller gets with the same defaults."""
    for name, body in _files(group).items():
        fn = REGISTRIES[group].get(name).fn
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


def test_the_main_config_holds_parameters_of_every_metric():
    main = (CONF / "config.yaml").read_text()
    listed = set(re.findall(r"- metric@metric\.(\w+): (\w+)", main))
    assert listed == {(m, m) for m in metrics.names()}
