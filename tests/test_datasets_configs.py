"""Every dataset and model entry has a config with the same parameters and defaults."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from faithbench import datasets, models

CONF = Path(__file__).resolve().parents[1] / "conf"
GENERIC = {"name": "", "shard": 0, "num_shards": 1, "limit": None, "subset_seed": None}


def params(fn, skip: int) -> dict:
    sig = list(inspect.signature(fn).parameters.values())[skip:]
    return {p.name: p.default for p in sig if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


@pytest.mark.parametrize("name", datasets.names())
def test_dataset_config_matches_builder(name):
    conf = yaml.safe_load((CONF / "dataset" / f"{name}.yaml").read_text())
    assert conf["name"] == name
    for k, v in GENERIC.items():
        if k != "name":
            assert conf[k] == v, k
    own = {k: v for k, v in conf.items() if k not in GENERIC}
    assert own == params(datasets.get(name).fn, skip=1)  # first parameter: preprocess


@pytest.mark.parametrize("name", [n for n in models.names() if (CONF / "model" / f"{n}.yaml").is_file()])
def test_model_config_matches_builder(name):
    conf = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
    assert conf.pop("name") == name
    assert conf == params(models.get(name).fn, skip=0)


def test_every_config_has_an_entry():
    assert sorted(p.stem for p in (CONF / "dataset").glob("*.yaml")) == datasets.names()
    # a model without YAML (``callable``) has its node generated from its signature
    assert {p.stem for p in (CONF / "model").glob("*.yaml")} <= set(models.names())
