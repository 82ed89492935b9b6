"""Declared parameter checks: the rules read from annotations, and a walk over every
registered method and metric showing that a value its declaration refuses stops the job
before any MLflow run is opened."""

from __future__ import annotations

import math
import subprocess
import sys
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from faithbench import methods, metrics
from faithbench.cli import compose
from faithbench.errors import ConfigError
from faithbench.params import (Check, Count, Fraction, NonEmpty, Odd, OddSize, Range, check_params,
                               declared)
from faithbench.run import run


def f(x, *, mode: Literal["a", "b"] = "a", step: Fraction = 0.5, n: Count = 3,
      k: OddSize = 11, act: Literal["softmax", "sigmoid"] | None = None, flag: bool = False,
      levels: Annotated[Sequence[float], NonEmpty()] = (1.0,), name: str = "s",
      pair: tuple[int, int] = (1, 2), seed: int | None = None, obj: Any = None):
    return x


@pytest.mark.parametrize("params", [
    {"mode": "b"}, {"step": 1}, {"step": 1e-9}, {"n": 1}, {"k": 1}, {"k": 13}, {"act": None},
    {"act": "sigmoid"}, {"flag": True}, {"levels": [0.0, 2.0]}, {"name": "x"}, {"pair": [3, 4]},
    {"seed": None}, {"seed": 7}, {"obj": object()}, {"unknown": 1},
    # what a notebook passes: numpy and torch scalars, OmegaConf lists, arrays
    {"step": np.float32(0.5)}, {"step": torch.tensor(0.5)}, {"n": np.int64(4)},
    {"levels": OmegaConf.create([0.1, 0.2])}, {"levels": np.array([0.1, 0.2])},
])
def test_admitted_values_pass(params):
    check_params(f, params, "metric 'f'")


@pytest.mark.parametrize("params, message", [
    ({"mode": "c"}, r"metric 'f': unknown mode 'c'\. Valid choices: a, b\."),
    ({"step": 0}, r"metric 'f': step=0 is out of range; valid: \(0, 1\]"),
    ({"step": 1.5}, r"step=1.5 is out of range; valid: \(0, 1\]"),
    ({"step": "big"}, r"step='big' must be a number"),
    ({"n": 0}, r"n=0 is out of range; valid: \[1, inf\)"),
    ({"n": 2.5}, r"n=2.5 must be an integer"),
    ({"n": True}, r"n=True must be an integer"),
    ({"k": 4}, r"k=4 must be an odd positive integer"),
    ({"k": -1}, r"k=-1 must be an odd positive integer"),
    ({"act": "logit"}, r"unknown act 'logit'\. .*Valid choices: sigmoid, softmax\."),
    ({"flag": "yes"}, r"flag='yes' must be true or false"),
    ({"levels": []}, r"levels=\[\] must hold at least one value"),
    ({"levels": ["a"]}, r"levels\[\]='a' must be a number"),
    ({"levels": 3.0}, r"levels=3.0 must be a list"),
    ({"name": 3}, r"name=3 must be a string"),
    ({"pair": [1]}, r"pair=\[1\] must hold 2 values"),
    ({"seed": "x"}, r"seed='x' must be an integer"),
    ({"step": float("nan")}, r"step=nan must be a number"),
    ({"n": np.float64(2.0)}, r"must be an integer"),
    ({"step": np.float32(0.0)}, r"step=0.0 is out of range"),
    ({"levels": {"a": 1}}, r"must be a list"),
])
def test_refused_values_name_the_value_and_what_is_valid(params, message):
    with pytest.raises(ConfigError, match=message):
        check_params(f, params, "metric 'f'")


def test_range_bounds_are_exact():
    r = Range(0, 1, lo_open=True)
    assert r.problem(0) and not r.problem(1) and not r.problem(1e-300)
    r = Range(0, 1, hi_open=True)
    assert not r.problem(0) and r.problem(1)
    assert Odd().problem(2) and Odd().problem(-1) and not Odd().problem(3)


def test_a_direct_call_runs_the_same_checks():
    with pytest.raises(ConfigError, match=r"method 'rise': keep_prob=0 is out of range"):
        methods.get("rise").fn(None, torch.zeros(1, 3, 8, 8), [0], keep_prob=0)


def _bad_value(tp: Any) -> Any:
    """A value that annotation ``tp`` refuses, or None where it admits everything."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *rules = typing.get_args(tp)
        for rule in rules:
            if isinstance(rule, Range):
                if rule.lo > -math.inf:
                    return rule.lo - 1
                return rule.hi + 1
            if isinstance(rule, NonEmpty):
                return []
            if isinstance(rule, Check):
                return 2 if isinstance(rule, Odd) else None
        return _bad_value(base)
    if origin is Literal:
        return "no_such_choice"
    if origin in (typing.Union, __import__("types").UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        for m in members:
            v = _bad_value(m)
            if v is not None and all(check_refuses(n, v) for n in members):
                return v
        return None
    return {int: "not_an_int", float: "not_a_number", bool: "maybe", str: 123}.get(tp)


def check_refuses(tp: Any, value: Any) -> bool:
    try:
        check_params(lambda p=None: None, {}, "")  # noqa: E731 - warm-up, never refuses
        def probe(p: tp = None):  # type: ignore[valid-type]
            return p
        probe.__annotations__ = {"p": tp}
        check_params(probe, {"p": value}, "")
    except ConfigError:
        return True
    return False


def _cases() -> list[tuple[str, str, str, Any]]:
    out = []
    for kind, reg in (("method", methods), ("metric", metrics)):
        for name in reg.names():
            for param, tp in declared(reg.get(name).fn).items():
                value = _bad_value(tp)
                if value is not None:
                    out.append((kind, name, param, value))
    return out


CASES = _cases()


def test_every_entry_declares_checks():
    assert len(CASES) > 60
    assert {("metric", "deletion", "step"), ("method", "rise", "keep_prob")} <= {c[:3] for c in CASES}


@pytest.mark.parametrize("kind, name, param, value", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_a_refused_value_stops_before_any_run_opens(workdir, kind, name, param, value):
    if kind == "method":
        overrides = [f"method={name}", f"++method.{param}={value!r}".replace("'", '"')]
    else:
        overrides = [f"metrics=[{name}]", f"++metric.{name}.{param}={value!r}".replace("'", '"')]
    cfg = compose(overrides + ["dataset.limit=2", "device=cpu"])
    with pytest.raises(ConfigError, match=rf"{kind} '{name}'.*{param}"):
        run(cfg)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faithbench")
    assert exp is None or not client.search_runs([exp.experiment_id])


def test_cli_refuses_an_impossible_step_before_logging(workdir):
    p = subprocess.run([sys.executable, "-m", "faithbench", "metric.deletion.step=0", "dataset.limit=2"],
                       cwd=workdir, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert "metric 'deletion': step=0 is out of range; valid: (0, 1]" in p.stderr
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faithbench")
    assert exp is None or not client.search_runs([exp.experiment_id], run_view_type=3)


def test_a_joint_rule_between_parameters_stops_before_any_run_opens(workdir):
    """``tolerance_unit=fraction`` with the default 15 (pixels) would let every point hit."""
    cfg = compose(["metrics=[pointing_game]", "metric.pointing_game.tolerance_unit=fraction",
                   "dataset.limit=2", "device=cpu"])
    with pytest.raises(ConfigError, match=r"metric 'pointing_game': tolerance=15.0 is out of range "
                                          r"for tolerance_unit='fraction'"):
        run(cfg)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faithbench")
    assert exp is None or not client.search_runs([exp.experiment_id])
