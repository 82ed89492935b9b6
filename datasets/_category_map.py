"""From a dataset's own categories to a model's class indices, by name or by table.

Names match after :func:`normalise`: case folded, ``_`` read as a space, runs of
whitespace collapsed to one space, ends stripped ("Tiger_Cat " matches "tiger cat").
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from faithbench.datasets._common import log
from faithbench.errors import ConfigError


def normalise(name: object) -> str:
    """The form in which category and class names are compared.

    Example:
        >>> normalise("  Tiger_Cat\\t")
        'tiger cat'
    """
    return " ".join(str(name).replace("_", " ").casefold().split())


def class_index(name: str, classes: Sequence[str], what: str) -> int:
    """The model class index named ``name`` (normalised), or a ConfigError naming the
    closest class names, or the indices when the name is ambiguous."""
    key = normalise(name)
    hits = [i for i, c in enumerate(classes) if normalise(c) == key]
    if len(hits) > 1:
        raise ConfigError(f"{what}: model class name {name!r} is ambiguous (indices "
                          f"{hits}); map it by index in dataset.category_map")
    if not hits:
        close = difflib.get_close_matches(key, [normalise(c) for c in classes], n=3, cutoff=0.6)
        hint = f" Closest model classes: {', '.join(map(repr, close))}." if close else ""
        raise ConfigError(f"{what}: {name!r} is not a model class name ({len(classes)} "
                          f"classes, e.g. {', '.join(map(repr, classes[:5]))}).{hint}")
    return hits[0]


def table_category(key: object, categories: Sequence[Mapping[str, Any]], what: str) -> int:
    """The category id a ``category_map`` key names: an integer is a category id; a
    string is a category name (normalised), else the digits of an id."""
    ids = {int(c["id"]) for c in categories}
    if isinstance(key, int) and not isinstance(key, bool) and key in ids:
        return key
    if isinstance(key, str):
        named = [int(c["id"]) for c in categories if normalise(c["name"]) == normalise(key)]
        if len(named) == 1:
            return named[0]
        if key.strip().isdigit() and int(key) in ids:
            return int(key)
    listing = ", ".join(f"{c['id']}: {c['name']!r}" for c in categories)
    raise ConfigError(f"{what}: dataset.category_map key {key!r} is not a category of the "
                      f"annotations file; its categories (id: name): {listing}")


def table_class(value: object, classes: Sequence[str] | None, what: str) -> int | None:
    """The model class a ``category_map`` value names: an index, a class name, or None
    (the category is dropped)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or (classes and value >= len(classes)):
            bound = f"[0, {len(classes)})" if classes else ">= 0"
            raise ConfigError(f"{what}: dataset.category_map value {value} is not a model "
                              f"class index {bound}")
        return value
    if isinstance(value, str):
        if not classes:
            raise ConfigError(f"{what}: dataset.category_map maps to the class name {value!r} "
                              "but the model's class names are unknown: set dataset.label_space "
                              "or dataset.classes, or map to indices")
        return class_index(value, classes, what)
    raise ConfigError(f"{what}: dataset.category_map value {value!r} must be a class index, "
                      "a class name or null")


def map_categories(categories: Sequence[Mapping[str, Any]], classes: Sequence[str] | None,
                   table: Mapping[Any, Any] | None, unmatched: str, what: str,
                   source: str = "the model") -> dict[int, int]:
    """Category id -> model class index. Entries of ``table`` first (a null value drops
    the category); every other category by its name when the model's ``classes`` are
    known (``source`` says where they come from, for messages). Categories left over
    are an error listing them (``unmatched="error"``), or are dropped with one warning
    (``"drop"``); a dropped category's annotations are ignored."""
    out: dict[int, int] = {}
    decided: set[int] = set()
    for key, value in (table or {}).items():
        cid = table_category(key, categories, what)
        decided.add(cid)
        index = table_class(value, classes, what)
        if index is not None:
            out[cid] = index
    left = [c for c in categories if int(c["id"]) not in decided]
    missing = []
    for c in left:
        if classes and any(normalise(n) == normalise(c["name"]) for n in classes):
            out[int(c["id"])] = class_index(c["name"], classes, what)
        else:
            missing.append(f"{c['name']!r} (id {c['id']})")
    if missing and unmatched == "error":
        hint = (f" among the {len(classes)} classes of {source}" if classes else
                " (the model's class names are unknown: set dataset.label_space or dataset.classes)")
        raise ConfigError(f"{what}: categories with no model class{hint}: {', '.join(missing)}; "
                          "map them in dataset.category_map, or set dataset.unmatched=drop")
    if missing:
        log.warning("%s: dropping categories with no model class: %s", what, ", ".join(missing))
    return out
