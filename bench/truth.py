"""Verification by intervention for the known-truth track, run before any scoring.

A dataset registered with ``interventions=True`` (``cues``) re-renders each sample
without the cue its label rule uses and without the other cue. The model's predictions
on the three versions tell whether it really uses the cue it is supposed to: removing
the used cue must change at least ``min_used_flip`` of its predictions, removing the
other cue at most ``max_other_flip`` (thresholds from the dataset config). A model that
fails is refused with both rates in the message; one that passes is scored, and the
per-sample flips go into its rows and MLflow metrics through a metric job
(``cue_verification``: 1 where the sample passes both, ``_used``/``_other``: whether
removing that cue changed the prediction). Removing a cue and watching the decision is
the check of BAM (Yang & Kim 2019, Sec. 3) made per sample.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from faithbench.config import digest
from faithbench.errors import ConfigError
from faithbench.scoring import MetricJob
from faithbench.types import Batch, MetricInfo, ModelSpec

log = logging.getLogger("faithbench")
NAME = "cue_verification"
INFO = MetricInfo(higher_is_better=True,
                  outputs={f"{NAME}_used": True, f"{NAME}_other": False})


class VerificationError(ConfigError):
    """The model does not use the cue its dataset's rule says it uses (or uses the other)."""


class InterventionDataset(Protocol):
    rule: str
    other: str
    min_used_flip: float
    max_other_flip: float

    def identity(self) -> tuple[object, ...]: ...

    def interventions(self, indices: Sequence[int]) -> dict[str, Tensor]: ...


@dataclass
class Verification:
    """Per-sample flips of one model on one dataset's samples, and the rates."""

    model: str
    rule: str
    other: str
    used: dict[int, bool]  # dataset index -> removing the used cue changed the prediction
    changed_other: dict[int, bool]  # ... removing the other cue changed it
    min_used_flip: float
    max_other_flip: float

    @property
    def used_rate(self) -> float:
        return sum(self.used.values()) / max(1, len(self.used))

    @property
    def other_rate(self) -> float:
        return sum(self.changed_other.values()) / max(1, len(self.changed_other))

    @property
    def passed(self) -> bool:
        return self.used_rate >= self.min_used_flip and self.other_rate <= self.max_other_flip

    def summary(self) -> str:
        return (f"removing the {self.rule} (the cue it should use) changes "
                f"{self.used_rate:.1%} of its predictions (needs >= {self.min_used_flip:.1%}); "
                f"removing the {self.other} changes {self.other_rate:.1%} "
                f"(needs <= {self.max_other_flip:.1%}); {len(self.used)} samples")

    def metric_job(self) -> MetricJob:
        """A job that writes each sample's verification into its row (the runner then
        logs the means, i.e. the two rates checked here, as MLflow metrics)."""
        return MetricJob(NAME, self.values, {}, INFO)

    def values(self, model: nn.Module, x: Tensor, heatmap: Tensor, target: Tensor,
               batch: Batch) -> dict[str, Tensor]:
        """[B] per-sample flips looked up by dataset index (NaN: not verified)."""
        nan = float("nan")
        used = torch.tensor([float(self.used.get(int(i), nan)) for i in batch.index])
        other = torch.tensor([float(self.changed_other.get(int(i), nan)) for i in batch.index])
        ok = torch.where(used.isnan() | other.isnan(), nan, ((used == 1) & (other == 0)).float())
        dev = x.device
        return {NAME: ok.to(dev), f"{NAME}_used": used.to(dev), f"{NAME}_other": other.to(dev)}


_DONE: dict[str, Verification] = {}  # the jobs of a sweep share one verification


@torch.inference_mode()
def verify(spec: ModelSpec, ds: InterventionDataset, indices: Sequence[int],
           device: torch.device, chunk: int = 256) -> Verification:
    """Run the interventions on ``indices`` and refuse a model that fails.

    Args:
        spec: the model (eval mode, on ``device``).
        ds: a dataset with ``interventions(indices) -> {"clean", "without_used",
            "without_other"}`` ([N,3,H,W] model input each) and its thresholds.
        indices: the dataset positions the run will score.
        chunk: scenes rendered and classified at a time.
    Returns:
        the Verification (rates and per-sample flips).
    Raises:
        VerificationError: a rate misses its threshold; the message has both rates.
    """
    key = digest([spec.weights_id, ds.identity(), list(indices), str(device),
                  ds.min_used_flip, ds.max_other_flip])
    if key not in _DONE:
        used: dict[int, bool] = {}
        other: dict[int, bool] = {}
        for start in range(0, len(indices), chunk):
            idx = list(indices[start:start + chunk])
            views = ds.interventions(idx)
            pred = {k: spec.model(v.to(device)).argmax(1).cpu() for k, v in views.items()}
            for j, i in enumerate(idx):
                used[i] = bool(pred["without_used"][j] != pred["clean"][j])
                other[i] = bool(pred["without_other"][j] != pred["clean"][j])
        if len(_DONE) > 16:
            _DONE.clear()
        _DONE[key] = Verification(spec.name, ds.rule, ds.other, used, other,
                                  ds.min_used_flip, ds.max_other_flip)
    v = _DONE[key]
    if not v.passed:
        raise VerificationError(f"model {spec.name!r} fails the known-truth verification "
                                f"(rule={v.rule}): {v.summary()}. Its attributions are not scored.")
    log.info("known-truth verification of %s passed: %s", spec.name, v.summary())
    return v


def verify_job(spec: ModelSpec, ds: Any, indices: Sequence[int], device: torch.device) -> MetricJob:
    """``verify`` and return its metric job (the runner's one call)."""
    return verify(spec, ds, indices, device).metric_job()
