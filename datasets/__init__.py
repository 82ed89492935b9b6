"""Datasets: ``builder(preprocess, **params) -> BenchDataset`` yielding Samples whose
images are already normalised for the model and whose ground truth (boxes, masks) is in
model-input pixels. One module per dataset, named like its registry key."""

from __future__ import annotations

from typing import Any

from faithbench.preprocess import Preprocess
from faithbench.registry import Registry
from faithbench.types import BenchDataset, DatasetInfo

# A plugin builder that does not register itself gets the default DatasetInfo.
DATASETS: Registry[DatasetInfo] = Registry("dataset", __name__, DatasetInfo,
                                           lambda fn: DatasetInfo())
# get(name): the entry, or an error listing the valid names; names("grad_*"): sorted matches
register, get, names = DATASETS.register, DATASETS.get, DATASETS.names


def build(name: str, preprocess: Preprocess, **params: Any) -> BenchDataset:
    """Build dataset ``name`` for a model that takes ``preprocess``."""
    return DATASETS.get(name).fn(preprocess, **params)
