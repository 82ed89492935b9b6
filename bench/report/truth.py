"""The known-truth section: verification rates, per-model cue scores and the model
contrast score of every method, from the runs of the ``cues`` track.

Model contrast (after BAM's MCS, Yang & Kim, "Benchmarking Attribution Methods with
Relative Feature Importance", 2019): the same images are explained for two models that
are verified to use different cues. Per image, with ``used_r``/``other_r`` the map's
positive-mass shares (``cue_mass``/``cue_mass_other``) for the model of rule ``r``,

    contrast = ((used_shape - other_marker) + (used_marker - other_shape)) / 2,

the mean of BAM's MCS with each cue as the common feature: how much more of the map sits
on the shape when the model uses the shape than when it uses the marker, and the same
for the marker. In [-1, 1]; any map that ignores the model (``edge``, ``random``: the
same map for both models) scores exactly 0; a method that follows the model scores high.
BAM averages a percentile-normalised map over the object instead of mass shares, and
uses the samples both models classify correctly, as here. The same is reported with the
cue pointing game's hits (``pointing contrast``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from faithbench.aggregate import summarize
from faithbench.report.merge import Group

RULES = ("shape", "marker")
SAME_IMAGES = ("dataset.seed", "dataset.size", "dataset.max_distractors")


@dataclass
class TruthReport:
    verification: pd.DataFrame  # one row per (model, rule)
    board: pd.DataFrame  # one row per method: contrast and per-model scores
    chance: dict[str, float]  # per-model score of a uniform map / a random point


def model_contrast(used_a: np.ndarray, other_a: np.ndarray, used_b: np.ndarray,
                   other_b: np.ndarray) -> np.ndarray:
    """Per-sample contrast of two models a, b (each verified to use its own cue) from
    the map's score on the model's used cue and on the other cue, all [N]."""
    return ((used_a - other_b) + (used_b - other_a)) / 2


def is_truth(g: Group) -> bool:
    """Whether the group is a run of the track (a ``dataset.rule`` of ``RULES``)."""
    return g.first.params.get("dataset.rule") in RULES


COLUMNS = ("id", "image_id", "correct", "cue_verification_used", "cue_verification_other")


def truth_columns(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """The columns of a track run's frame that this section reads (``COLUMNS`` and the
    ``cue_*`` scores): what a report keeps once a leaderboard's frames are dropped."""
    if frame is None:
        return None
    return frame[[c for c in frame.columns if c in COLUMNS or c.startswith(("cue_mass", "cue_pointing_game"))]]


def _pairs(groups: list[Group], problems: list[str]) -> dict[tuple, dict[str, Group]]:
    """Track groups keyed by (dataset, images, method label) -> rule -> group."""
    out: dict[tuple, dict[str, Group]] = {}
    for g in groups:
        rule = g.first.params.get("dataset.rule")
        if rule not in RULES or g.frame is None or "cue_mass" not in g.frame.columns:
            continue
        key = (g.dataset, *(g.first.params.get(k) for k in SAME_IMAGES), g.label)
        cell = out.setdefault(key, {})
        if rule in cell:
            problems.append(f"known truth: two {rule}-rule runs of {g.label} on {g.dataset} "
                            f"({cell[rule].model}, {g.model}); the first is used")
            continue
        cell[rule] = g
    return out


def _stat(values: np.ndarray, seed: int, n_resamples: int) -> dict[str, float]:
    return summarize(values, n_resamples=n_resamples, seed=seed)


def build_truth(groups: list[Group], problems: list[str], n_resamples: int = 1000,
                seed: int = 0) -> TruthReport | None:
    """The section's tables; None when no run of the track is selected."""
    pairs = _pairs(groups, problems)
    if not pairs:
        return None
    ver, rows = {}, []
    for key, by_rule in sorted(pairs.items(), key=lambda kv: str(kv[0])):
        for rule, g in by_rule.items():
            f = g.frame
            if (g.model, rule) not in ver and "cue_verification_used" in f.columns:  # type: ignore[operator]
                ver[(g.model, rule)] = {
                    "model": g.model, "rule": rule, "n": len(f),  # type: ignore[arg-type]
                    "used_cue_flip": f["cue_verification_used"].mean(),  # type: ignore[index]
                    "min_used_flip": float(g.first.params.get("dataset.min_used_flip", "nan")),
                    "other_cue_flip": f["cue_verification_other"].mean(),  # type: ignore[index]
                    "max_other_flip": float(g.first.params.get("dataset.max_other_flip", "nan")),
                    "accuracy": f["correct"].mean()}  # type: ignore[index]
        row: dict[str, object] = {"method": key[-1]}
        for rule in RULES:
            if rule in by_rule:
                f = by_rule[rule].frame
                for col in ("cue_mass", "cue_pointing_game"):
                    if col in f.columns:  # type: ignore[union-attr]
                        row[f"{col} ({rule} model)"] = f[col].mean()  # type: ignore[index]
        if len(by_rule) == 2:
            a, b = by_rule["shape"].frame, by_rule["marker"].frame
            j = a.merge(b, on="image_id", suffixes=("_a", "_b"))  # type: ignore[union-attr]
            j = j[j["correct_a"].astype(bool) & j["correct_b"].astype(bool)]
            for col, name in (("cue_mass", "contrast"), ("cue_pointing_game", "pointing contrast")):
                if f"{col}_other_a" not in j.columns:
                    continue
                c = model_contrast(*(j[f"{col}{s}"].to_numpy(dtype=float) for s in
                                     ("_a", "_other_a", "_b", "_other_b")))
                st = _stat(c, seed, n_resamples)
                row.update({name: st["mean"], f"{name} ci_low": st["ci_low"],
                            f"{name} ci_high": st["ci_high"]})
                row["n_pairs"] = st["n"]
        else:
            problems.append(f"known truth: {key[-1]} on {key[0]} has no run for the "
                            f"{'marker' if 'shape' in by_rule else 'shape'} rule: no contrast")
        rows.append(row)
    board = pd.DataFrame(rows)
    front = [c for c in ("method", "contrast", "contrast ci_low", "contrast ci_high",
                         "pointing contrast", "pointing contrast ci_low",
                         "pointing contrast ci_high", "n_pairs") if c in board.columns]
    board = board[front + [c for c in board.columns if c not in front]]
    if "contrast" in board.columns:
        board = board.sort_values("contrast", ascending=False, kind="stable", na_position="last")
    return TruthReport(pd.DataFrame(list(ver.values())), board.reset_index(drop=True),
                       chance_row(groups))


def chance_row(groups: list[Group]) -> dict[str, float]:
    """What a uniform map (mass) and a random point (pointing) score, per rule."""
    out: dict[str, float] = {}
    for g in groups:
        rule, f = g.first.params.get("dataset.rule"), g.frame
        if rule not in RULES or f is None:
            continue
        for col in ("cue_mass", "cue_pointing_game"):
            if f"{col}_chance" in f.columns:
                out.setdefault(f"{col} ({rule} model)", float(np.nanmean(f[f"{col}_chance"])))
    return out


def tables(tr: TruthReport, digits: int, markup: str) -> dict[str, tuple]:
    """Title -> (header, rows) of the section's two tables in ``markup``."""
    from faithbench.report.render import frame_rows, num, small

    out: dict[str, tuple] = {}
    if len(tr.verification):
        out["Known truth: verification by intervention (share of predictions changed)"] = \
            frame_rows(tr.verification, digits, markup)  # type: ignore[arg-type]
    b = tr.board.copy()
    for name in ("contrast", "pointing contrast"):
        if name in b.columns:
            b[name] = [f"{num(m, digits)} " + small(f"[{num(lo, digits)}, {num(hi, digits)}]", markup)  # type: ignore[arg-type]
                       for m, lo, hi in zip(b[name], b[f"{name} ci_low"], b[f"{name} ci_high"])]
            b = b.drop(columns=[f"{name} ci_low", f"{name} ci_high"])
    if tr.chance:
        b = pd.concat([b, pd.DataFrame([{"method": "(chance)", **tr.chance}])], ignore_index=True)
    out["Known truth: model contrast (0 = the map ignores the model) and scores on the used cue"] = \
        frame_rows(b, digits, markup)  # type: ignore[arg-type]
    return out


NOTE = ("Known truth: each model is verified by intervention before scoring (removing its "
        "cue must change its prediction, removing the other cue must not). contrast: "
        "per image, ((shape share, shape model - shape share, marker model) + (marker share, "
        "marker model - marker share, shape model)) / 2 of the map's positive mass, on the "
        "images both models classify correctly, mean [95% bootstrap CI]; a map that ignores "
        "the model scores 0 (after BAM's model contrast score, Yang & Kim 2019).")
