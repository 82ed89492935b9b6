"""Errors raised for bad user input: each names the bad value and the valid choices."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A configuration value is invalid; the message says which and what is allowed."""


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> ConfigError:
    """Error for a name that is not one of ``choices``, with the closest matches first."""
    choices = sorted(choices)
    close = difflib.get_close_matches(str(value), choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown {kind} {value!r}.{hint} Valid choices: {', '.join(choices)}.")


class IncompatibleError(ConfigError):
    """A model and a dataset that cannot go together (their label spaces differ), or a
    method and a model (an attention method on a CNN); a sweep skips such jobs instead
    of failing."""


def check_choice(kind: str, value: object, choices: Iterable[str]) -> None:
    """Raise :func:`unknown_choice` unless ``value`` is one of ``choices``.

    Example:
        >>> check_choice("order", "morf", ["morf", "lerf"])
        >>> check_choice("order", "mrf", ["morf", "lerf"])
        Traceback (most recent call last):
        ...
        faithbench.errors.ConfigError: unknown order 'mrf'. Did you mean 'morf', 'lerf'? Valid choices: lerf, morf.
    """
    choices = tuple(choices)
    if value not in choices:
        raise unknown_choice(kind, value, choices)
