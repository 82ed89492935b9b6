"""What a network learned: filters, activations, representation space and
optimisation-based visualisations (the ``faithbench visualize`` job).

Each family module holds plain functions that return tensors (``filter_images``,
``top_activations``, ``maximise_activation``, ...), functions that draw them as
matplotlib figures, and one or more registered entries
``name(ctx: VizContext, **params) -> VizResult`` that the job runs by name
(``conf/viz/<name>.yaml`` holds each entry's parameters with the Python defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

from faithbench.registry import Registry


@dataclass(frozen=True)
class VizInfo:
    """What a visualisation needs, read by the job and shown by ``faithbench list``."""

    uses_dataset: bool = True  # may read the selected dataset (built on first use)
    optimises: bool = False  # optimises an image by gradient steps (cost: steps x backward)
    dataset_wide: bool = False  # passes over every selected sample (limit it for speed)


VISUALIZATIONS: Registry[VizInfo] = Registry("visualization", __name__, VizInfo)
# get(name): the entry, or an error listing the valid names; names("grad_*"): sorted matches
register, get, names = VISUALIZATIONS.register, VISUALIZATIONS.get, VISUALIZATIONS.names
