"""The record schema: the names a run is logged under and read back by.

The runner, tracking and artifacts write these names; the CLI summary, the report and
its figures read them. Both sides import this module, so a name changes in one place:
MLflow tag keys, the shard tag ``"i/N"``, and the names derived from a metric output
``key`` (per-sample columns ``<key>_curve`` [B,T] and its x positions ``<key>_curve_x``,
logged statistics ``<key>_ci_low``, ``<key>_ci_high``, ``<key>_n``, ``<key>_classes``).

Example:
    >>> shard_tag(2, 4), parse_shard("2/4"), parse_shard("")
    ('2/4', (2, 4), (0, 1))
    >>> curve_key("insertion"), is_curve("insertion_curve"), curve_base("insertion_curve")
    ('insertion_curve', True, 'insertion')
    >>> stat_key("insertion", "ci_low")
    'insertion_ci_low'
"""

from __future__ import annotations

from collections.abc import Mapping

# MLflow tags of a benchmark run
RUN_KEY = "faithbench.run_key"  # one run (one shard) of one config
GROUP_KEY = "faithbench.group_key"  # shared by all shards of one config
SWEEP = "faithbench.sweep"  # the Hydra sweep (or run) directory
SUPERSEDED = "faithbench.superseded"  # "true" on a run replaced by a forced rerun
KIND = "faithbench.kind"  # "report" / "visualize" on runs that are not benchmark runs
VERSION, GIT = "faithbench.version", "faithbench.git"  # the code a run was made with
CACHE_CORRUPT = "faithbench.cache_corrupt"
CACHE_BYTES = "faithbench.cache_bytes"
MODEL, METHOD, DATASET, SHARD = "model", "method", "dataset", "shard"
IDENTITY = (MODEL, METHOD, DATASET)  # the tags every benchmark run has
WHOLE = "0/1"  # the shard tag of an unsharded run

# suffixes of the names derived from an output key
CURVE = "_curve"  # per-sample [B,T] values along a perturbation / threshold axis
X, Y = "_x", "_y"  # x positions of a curve; a point's coordinates (pointing game)
POINT, BOX = "_point", "_box"  # per-sample vectors: a (y, x) point, an xyxy box
CORNERS = ("x0", "y0", "x1", "y1")  # a box as four scalar columns <prefix>_x0, ...
STATS = ("ci_low", "ci_high", "n", "classes")  # logged beside <key>: CI, count, classes


def shard_tag(shard: int, num_shards: int) -> str:
    """The ``shard`` tag ``"i/N"`` of shard ``i`` of ``N``."""
    return f"{shard}/{num_shards}"


def parse_shard(tag: str) -> tuple[int, int]:
    """(shard, num_shards) of a ``shard`` tag ``"i/N"``; an empty ``N`` reads as 1."""
    i, _, n = (tag or WHOLE).partition("/")
    return int(i), int(n or 1)


def identity(tags: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(model, method, dataset) of a run's tags; None when one is missing (not a
    benchmark run)."""
    if any(t not in tags for t in IDENTITY):
        return None
    return tags[MODEL], tags[METHOD], tags[DATASET]


def curve_key(key: str) -> str:
    """The per-sample curve column of output ``key``."""
    return key + CURVE


def is_curve(column: str) -> bool:
    """Whether ``column`` is a per-sample curve (``<key>_curve``)."""
    return column.endswith(CURVE)


def curve_base(column: str) -> str:
    """``key`` of a curve column ``<key>_curve`` (the column itself otherwise)."""
    return column.removesuffix(CURVE)


def x_key(column: str) -> str:
    """The column holding the x positions of curve ``column`` (``<column>_x``)."""
    return column + X


def point_keys(prefix: str) -> tuple[str, str]:
    """The (y, x) columns of a point output ``prefix`` (``<prefix>_y``, ``<prefix>_x``)."""
    return prefix + Y, prefix + X


def point_prefix(column: str) -> str | None:
    """``prefix`` of a point's y column ``<prefix>_y``; None for other columns."""
    return column.removesuffix(Y) if column.endswith(Y) else None


def vector_prefix(column: str, kind: str) -> str | None:
    """``prefix`` of a per-sample vector column ``<prefix><kind>`` (``kind``: ``POINT``
    or ``BOX``); None for other columns."""
    return column.removesuffix(kind) if column.endswith(kind) else None


def box_keys(prefix: str) -> tuple[str, str, str, str]:
    """The four scalar columns ``<prefix>_x0/_y0/_x1/_y1`` of a box output."""
    return tuple(f"{prefix}_{s}" for s in CORNERS)  # type: ignore[return-value]


def box_prefix(column: str) -> str | None:
    """``prefix`` of a box's first corner column ``<prefix>_x0``; None otherwise."""
    suffix = "_" + CORNERS[0]
    return column.removesuffix(suffix) if column.endswith(suffix) else None


def stat_key(key: str, stat: str) -> str:
    """The logged name of statistic ``stat`` (one of ``STATS``) of output ``key``."""
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}; valid: {', '.join(STATS)}")
    return f"{key}_{stat}"


def stat_record(key: str, stats: Mapping[str, float]) -> dict[str, float]:
    """The logged metrics of one output from its aggregation's ``{"mean", "ci_low",
    "ci_high", "n"[, "classes"]}``: ``<key>``, ``<key>_ci_low``, ``<key>_ci_high``,
    ``<key>_n`` and, for a class mean, ``<key>_classes``."""
    out = {key: stats["mean"], stat_key(key, "ci_low"): stats["ci_low"],
           stat_key(key, "ci_high"): stats["ci_high"], stat_key(key, "n"): float(stats["n"])}
    if "classes" in stats:  # how many classes a class mean is over
        out[stat_key(key, "classes")] = float(stats["classes"])
    return out


# A metric listed under another name (``metrics=[deletion, deletion_blur]`` with
# ``metric.deletion_blur: {name: deletion, substitute: blur}``) runs the same entry with
# other parameters; its outputs are renamed so that both sets of columns coexist.
COST_SECONDS, COST_FORWARDS = "_seconds_per_sample", "_forwards_per_sample"  # logged per metric


def alias_output(alias: str, entry: str, key: str) -> str:
    """The column of output ``key`` of metric ``entry`` when listed as ``alias``: the
    entry's name replaced by the alias where the key starts with it, else prefixed.

    Example:
        >>> alias_output("deletion_blur", "deletion", "deletion_curve")
        'deletion_blur_curve'
        >>> alias_output("road_coarse", "road", "lerf_auc"), alias_output("deletion", "deletion", "deletion")
        ('road_coarse_lerf_auc', 'deletion')
    """
    if alias == entry:
        return key
    if key == entry or key.startswith(entry + "_"):
        return alias + key[len(entry):]
    return f"{alias}_{key}"


def entry_output(alias: str, entry: str, column: str) -> str:
    """The entry's own name of output ``column`` of ``alias`` (the inverse of
    ``alias_output`` for every output named after its metric, as all declared ones are).

    Example:
        >>> entry_output("deletion_blur", "deletion", "deletion_blur_curve")
        'deletion_curve'
    """
    if alias == entry or not column.startswith(alias):
        return column
    return entry + column[len(alias):]


def metric_aliases(params: Mapping[str, str], names: list[str]) -> dict[str, str]:
    """Listed metric name -> registered entry, from a run's flattened params (an alias's
    node holds ``metric.<alias>.name``); names without one, and dotted-path metrics
    (``name: callable``), map to themselves."""
    out = {}
    for n in names:
        named = str(params.get(f"metric.{n}.name") or n)
        out[n] = n if named == "callable" else named
    return out
