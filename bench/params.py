"""Declared parameter checks: an entry's signature is the only statement of what its
parameters may be.

``Literal[...]`` annotations give the valid choices, ``int``/``float``/``bool``/``str``
the type, and ``Annotated[T, Range(...)]`` (or any other :class:`Check`) the valid
values. :func:`check_params` reads them; the runner calls it for every method and metric
parameter before a run is opened, and the registries call it on every call of an entry,
so a direct call from Python is checked by the same rule.

Example:
    >>> from typing import Annotated
    >>> def f(x, step: Annotated[float, Range(0, 1, lo_open=True)] = 0.1): ...
    >>> check_params(f, {"step": 0.5}, "metric 'f'")
    >>> check_params(f, {"step": 0}, "metric 'f'")
    Traceback (most recent call last):
    ...
    faithbench.errors.ConfigError: metric 'f': step=0 is out of range; valid: (0, 1]
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union

from faithbench.errors import ConfigError, unknown_choice

F = TypeVar("F", bound=Callable[..., Any])


class Check:
    """A value rule inside ``Annotated[...]``: ``problem(value)`` says what is wrong, or
    returns None when the value is fine."""

    def problem(self, value: Any) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Range(Check):
    """``lo <(=) value <(=) hi``; open ends exclude the bound."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def problem(self, value: Any) -> str | None:
        ok = (value > self.lo if self.lo_open else value >= self.lo) and \
             (value < self.hi if self.hi_open else value <= self.hi)
        if ok:
            return None
        lo = "(" if self.lo_open or self.lo == -math.inf else "["
        hi = ")" if self.hi_open or self.hi == math.inf else "]"
        return f"is out of range; valid: {lo}{_num(self.lo)}, {_num(self.hi)}{hi}"


@dataclass(frozen=True)
class Odd(Check):
    """An odd positive integer (a kernel size with a centre pixel)."""

    def problem(self, value: Any) -> str | None:
        return None if value >= 1 and value % 2 == 1 else "must be an odd positive integer"


@dataclass(frozen=True)
class NonEmpty(Check):
    """A sequence with at least one element."""

    def problem(self, value: Any) -> str | None:
        return None if len(value) > 0 else "must hold at least one value"


@dataclass(frozen=True)
class Registered(Check):
    """The name of a registered entry of ``kind`` (``"method"``: smooth_grad's ``base``),
    other than ``itself``, the entry that takes the parameter."""

    kind: str
    itself: str | None = None

    def problem(self, value: Any) -> str | None:
        import importlib  # the registries import this module

        if value == self.itself:
            return f"would make {value!r} wrap itself; name another {self.kind}"
        reg = importlib.import_module(f"faithbench.{self.kind}s")
        names = [n for n in reg.names() if n != self.itself]
        if value in names:
            return None
        return f"is not a registered {self.kind}: {unknown_choice(self.kind, value, names)}"


# The ranges most parameters share, named once.
Fraction = Annotated[float, Range(0, 1, lo_open=True)]      # a share in (0, 1]: steps, top-k
UnitInterval = Annotated[float, Range(0, 1)]                # [0, 1]: thresholds
Positive = Annotated[float, Range(0, lo_open=True)]         # > 0: sigmas, radii, tolerances
NonNegative = Annotated[float, Range(0)]                    # >= 0: noise levels
Count = Annotated[int, Range(1)]                            # >= 1: chunks, samples, steps
OddSize = Annotated[int, Odd()]                             # an odd kernel size


def _num(v: float) -> str:
    if v in (math.inf, -math.inf):
        return "inf" if v > 0 else "-inf"
    return f"{v:g}"


# The data arguments of methods and metrics: not parameters, never in a config.
DATA_ARGS = ("model", "x", "heatmap", "target", "batch")


@functools.lru_cache(maxsize=None)
def declared(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s parameter annotations, resolved (with ``Annotated`` extras kept);
    an annotation that cannot be resolved is left out, not guessed."""
    raw = inspect.unwrap(fn)
    params = inspect.signature(raw).parameters
    try:
        hints = typing.get_type_hints(raw, include_extras=True)
    except Exception:  # a forward reference to a name only imported for type checking
        hints = {}
        for name, p in params.items():
            if isinstance(p.annotation, str):
                try:
                    hints[name] = eval(p.annotation, raw.__globals__)  # noqa: S307
                except Exception:
                    continue
            elif p.annotation is not inspect.Parameter.empty:
                hints[name] = p.annotation
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n: hints[n] for n, p in params.items()
            if n in hints and n not in DATA_ARGS and p.kind in plain}


def joint_rule(ok: Callable[[Mapping[str, Any]], bool], problem: str) -> Callable[[F], F]:
    """Declare a rule between parameters, checked with the others (``ok`` sees every
    parameter, defaults filled in); ``problem`` says what is wrong when it fails.
    Put it below ``@register``."""
    def decorator(fn: F) -> F:
        fn.__joint_rules__ = (*getattr(fn, "__joint_rules__", ()), (ok, problem))  # type: ignore[attr-defined]
        return fn

    return decorator


def check_params(fn: Callable[..., Any], params: Mapping[str, Any], what: str) -> None:
    """Raise ConfigError naming ``what``, the parameter, its bad value and what is valid,
    for the first value in ``params`` that its annotation in ``fn`` does not admit, then
    for the first joint rule the parameters break."""
    hints = declared(fn)
    for name, value in params.items():
        if name in hints:
            problem = _problem(hints[name], value, name)
            if problem:
                raise ConfigError(f"{what}: {problem}")
    raw = inspect.unwrap(fn)
    rules = getattr(raw, "__joint_rules__", ())
    if rules:
        full = {n: p.default for n, p in inspect.signature(raw).parameters.items()
                if p.default is not inspect.Parameter.empty}
        full.update(params)
        for ok, problem in rules:
            if not ok(full):
                raise ConfigError(f"{what}: {problem.format(**full)}")


def _problem(tp: Any, value: Any, name: str) -> str | None:
    """What is wrong with ``value`` for annotation ``tp`` (None: nothing)."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return None
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # a 0-d numpy array or tensor from a notebook: its number
    if origin is Annotated:
        base, *rules = typing.get_args(tp)
        bad = _problem(base, value, name)
        if bad or value is None:
            return bad
        for rule in rules:
            if isinstance(rule, Check) and (msg := rule.problem(value)):
                return f"{name}={value!r} {msg}"
        return None
    if origin is Literal:
        choices = typing.get_args(tp)
        return None if value in choices else str(unknown_choice(name, value, [str(c) for c in choices]))
    if origin in (Union, types.UnionType):
        members = typing.get_args(tp)
        if value is None and type(None) in members:
            return None
        problems = [_problem(m, value, name) for m in members if m is not type(None)]
        return None if any(p is None for p in problems) else problems[0]
    if tp is type(None):
        return None if value is None else f"{name}={value!r} must be null"
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__") \
                or not hasattr(value, "__iter__"):
            return f"{name}={value!r} must be a list"
        value = list(value)  # any sequence: a list, a tuple, an OmegaConf ListConfig, an array
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and len(args) == len(typing.get_args(tp)):
            if len(value) != len(args):
                return f"{name}={value!r} must hold {len(args)} values"
            pairs = list(zip(args, value))
        else:
            pairs = [(args[0], v) for v in value] if args else []
        for a, v in pairs:
            if (bad := _problem(a, v, f"{name}[]")):
                return bad
        return None
    if tp is bool:
        return None if isinstance(value, bool) else f"{name}={value!r} must be true or false"
    if tp is int:  # numbers.Integral admits numpy's integers too
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return None if ok else f"{name}={value!r} must be an integer"
    if tp is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
        return None if ok else f"{name}={value!r} must be a number"
    if tp is str:
        return None if isinstance(value, str) else f"{name}={value!r} must be a string"
    if typing.get_origin(tp) is None and isinstance(tp, type):  # a Preprocess, a Tensor baseline
        return None if isinstance(value, tp) else f"{name}={value!r} must be a {tp.__name__}"
    return None  # callables and other forms the runner injects: not config


def checked(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
    """``fn`` with its declared parameter checks run on every call."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind_partial(*args, **kwargs).arguments
        check_params(fn, {k: v for k, v in bound.items() if k not in DATA_ARGS}, what)
        return fn(*args, **kwargs)

    return call
