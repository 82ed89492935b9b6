"""Published numbers beside measured ones.

A preset states the numbers its paper published in a ``published:`` block, in the
units the harness logs (a fraction for hit rates, % for Average Drop)::

    published:
      source: "TorchRay, docs/pointing.csv"
      values:
        <model>:
          <dataset>:
            <method>:
              <output key>: 0.866            # or {value: 0.1232, unverified: true, note: ...}

Runs log the resolved config as flattened params, so the block reaches the report as
``published.values.<model>.<dataset>.<method>.<key>[.value|.unverified|.note]`` and
``published.source``; the same block can also be given as a YAML file
(``--published FILE``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from faithbench.errors import ConfigError

COLUMNS = ["model", "dataset", "method", "key", "published", "unverified", "note", "source"]
PREFIX = "published.values."


def _truthy(v: Any) -> bool:
    return str(v).strip().lower() in ("true", "1", "yes")


def _number(v: Any, where: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"published value {where} = {v!r} is not a number") from None


def from_params(params: dict[str, str]) -> pd.DataFrame:
    """Published records in a run's flattened params (empty when it has none)."""
    recs: dict[tuple[str, ...], dict[str, Any]] = {}
    for k, v in params.items():
        if not k.startswith(PREFIX):
            continue
        parts = k[len(PREFIX):].split(".")
        if len(parts) == 4:
            parts.append("value")
        if len(parts) != 5 or parts[4] not in ("value", "unverified", "note"):
            raise ConfigError(f"published param {k!r}: expected {PREFIX}<model>.<dataset>."
                              "<method>.<key>[.value|.unverified|.note]")
        rec = recs.setdefault(tuple(parts[:4]), {"unverified": False, "note": ""})
        if parts[4] == "value":
            rec["published"] = _number(v, k)
        elif parts[4] == "unverified":
            rec["unverified"] = _truthy(v)
        else:
            rec["note"] = str(v)
    source = params.get("published.source", "")
    rows = [{"model": m, "dataset": d, "method": me, "key": key, "source": source, **r}
            for (m, d, me, key), r in recs.items() if "published" in r]
    return pd.DataFrame(rows, columns=COLUMNS)


def from_block(block: dict[str, Any]) -> pd.DataFrame:
    """Published records of a ``published:`` mapping (as written in a preset)."""
    from faithbench.config import flatten

    flat = {f"published.{k}": v for k, v in flatten(block).items()}
    return from_params({k: str(v) for k, v in flat.items()})


def from_file(path: str | Path) -> pd.DataFrame:
    """Published records of a YAML file holding a ``published:`` block."""
    from omegaconf import OmegaConf

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"published numbers file {str(p)!r} does not exist")
    cfg = OmegaConf.to_container(OmegaConf.load(p), resolve=True)
    if not isinstance(cfg, dict) or "published" not in cfg:
        raise ConfigError(f"{p} has no top-level 'published:' block")
    return from_block(cfg["published"])


def compare(published: pd.DataFrame, cells: pd.DataFrame, model: str, dataset: str) -> pd.DataFrame:
    """Published beside measured for one leaderboard.

    Args:
        published: records (``COLUMNS``); cells: the board's (label, key) statistics.
    Returns:
        one row per published number of this (model, dataset): ``measured``,
        ``ci_low``, ``ci_high``, ``diff`` (measured - published) and ``in_ci``
        (published within the measured 95% CI); ``measured`` is NaN when not run.
    """
    pub = published[(published["model"] == model) & (published["dataset"] == dataset)]
    pub = pub.drop_duplicates(["method", "key"], keep="last")
    m = cells.rename(columns={"mean": "measured"})[["label", "key", "measured", "ci_low", "ci_high"]]
    out = pub.merge(m, left_on=["method", "key"], right_on=["label", "key"], how="left")
    out["diff"] = out["measured"] - out["published"]
    out["in_ci"] = (out["published"] >= out["ci_low"]) & (out["published"] <= out["ci_high"])
    return out.drop(columns=["label"]).reset_index(drop=True)

