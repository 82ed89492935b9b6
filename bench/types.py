"""The contracts shared by models, datasets, methods, metrics and the runner."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from faithbench.aggregate import MEAN, Aggregation
from faithbench.preprocess import Preprocess
from faithbench.tokens import TokenLayout

GroundTruth = Literal["boxes", "masks"]


@dataclass
class Sample:
    """One image, ready for the model, with its ground truth in model-input pixels.

    ``orig = (input_xy + offset) * scale`` maps model-input pixels back to original
    image pixels (offset undoes a crop, scale undoes the resize); both are (y, x).
    """

    image: Tensor  # [3,H,W] float32, normalised for the model
    label: Tensor  # [] int64, or [K] float32 multi-hot for multi-label datasets
    id: str
    boxes: Tensor | None = None  # [N,4] float32 xyxy
    box_labels: Tensor | None = None  # [N] int64 class ids
    box_difficult: Tensor | None = None  # [N] bool (VOC "difficult" objects)
    masks: Tensor | None = None  # [M,H,W] bool
    mask_labels: Tensor | None = None  # [M] int64
    # [M,h,w] bool: the same masks at the original image size (COCO keeps them for the
    # pointing game, which scores in original pixels; None where input masks suffice)
    orig_masks: Tensor | None = None
    orig_size: tuple[int, int] = (0, 0)  # (h, w) of the original image
    scale: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)
    hard_classes: Tensor | None = None  # [J] classes in the pointing-game "difficult" subset


@dataclass
class Batch:
    """Samples collated for one forward pass. Per-sample ground truth stays in lists
    because its length varies; ``index`` is each sample's position in the dataset."""

    images: Tensor  # [B,3,H,W]
    labels: Tensor  # [B] or [B,K]
    ids: list[str]
    index: Tensor  # [B] int64
    boxes: list[Tensor] | None = None
    box_labels: list[Tensor] | None = None
    box_difficult: list[Tensor] | None = None
    masks: list[Tensor] | None = None
    mask_labels: list[Tensor] | None = None
    orig_masks: list[Tensor] | None = None  # per sample [M,h,w] bool, original size
    orig_size: Tensor = field(default_factory=lambda: torch.zeros(0, 2))  # [B,2]
    scale: Tensor = field(default_factory=lambda: torch.ones(0, 2))  # [B,2]
    offset: Tensor = field(default_factory=lambda: torch.zeros(0, 2))  # [B,2]
    hard_classes: list[Tensor] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        self.images = self.images.to(device, non_blocking=True)
        self.labels = self.labels.to(device, non_blocking=True)
        return self

    def select(self, rows: Tensor) -> Batch:
        """The sub-batch (or re-indexed batch, rows may repeat) at ``rows`` [R] int64."""
        r = rows.tolist()
        pick = (lambda xs: None if xs is None else [xs[i] for i in r])  # noqa: E731
        cpu = rows.to("cpu")
        return Batch(
            images=self.images[rows.to(self.images.device)],
            labels=self.labels[rows.to(self.labels.device)],
            ids=[self.ids[i] for i in r],
            index=self.index[cpu],
            boxes=pick(self.boxes),
            box_labels=pick(self.box_labels),
            box_difficult=pick(self.box_difficult),
            masks=pick(self.masks),
            mask_labels=pick(self.mask_labels),
            orig_masks=pick(self.orig_masks),
            orig_size=self.orig_size[cpu],
            scale=self.scale[cpu],
            offset=self.offset[cpu],
            hard_classes=pick(self.hard_classes),
        )

    def regions(self, target: Tensor) -> list[Tensor | None]:
        """Per sample, the ground-truth region of class ``target[i]`` as a bool mask
        [H,W] in model-input pixels (``faithbench.regions.class_region``): the union of
        that class's masks if the dataset has masks, else the union of its boxes; None
        where the class has no ground truth or it is empty."""
        from faithbench.regions import class_region  # it reads Batch: imported on use

        return [class_region(self, i, t) for i, t in enumerate(target.tolist())]


def boxes_to_mask(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Union of xyxy boxes [N,4] as a bool mask [H,W]: pixels whose centre lies inside a
    box (a box thinner than a pixel still marks the pixel holding its centre)."""
    h, w = size
    m = torch.zeros(h, w, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.tolist():
        c0, c1 = math.ceil(x0 - 0.5), math.ceil(x1 - 0.5)
        r0, r1 = math.ceil(y0 - 0.5), math.ceil(y1 - 0.5)
        if c1 <= c0:
            c0 = c1 = int((x0 + x1) / 2)
            c1 += 1
        if r1 <= r0:
            r0 = r1 = int((y0 + y1) / 2)
            r1 += 1
        m[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = True
    return m


class BenchDataset(torch.utils.data.Dataset):
    """Base of every dataset: ``__getitem__`` returns a Sample, or None for an unreadable
    image or a broken annotation; the runner skips those with a warning and counts them."""

    label_space: str = ""
    class_names: list[str] = []
    multilabel: bool = False
    ground_truth: frozenset[str] = frozenset()  # subset of {"boxes", "masks"}

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample | None:
        raise NotImplementedError


def stack(samples: list[Sample], index: list[int]) -> Batch:
    """Stack samples of one image size into a Batch."""

    def opt(name: str) -> list[Tensor] | None:
        vals = [getattr(s, name) for s in samples]
        return None if any(v is None for v in vals) else vals

    return Batch(
        images=torch.stack([s.image for s in samples]),
        labels=torch.stack([s.label for s in samples]),
        ids=[s.id for s in samples],
        index=torch.tensor(index, dtype=torch.int64),
        boxes=opt("boxes"),
        box_labels=opt("box_labels"),
        box_difficult=opt("box_difficult"),
        masks=opt("masks"),
        mask_labels=opt("mask_labels"),
        orig_masks=opt("orig_masks"),
        orig_size=torch.tensor([s.orig_size for s in samples], dtype=torch.float32),
        scale=torch.tensor([s.scale for s in samples], dtype=torch.float32),
        offset=torch.tensor([s.offset for s in samples], dtype=torch.float32),
        hard_classes=opt("hard_classes"),
    )


@dataclass
class ModelSpec:
    """A classifier ready to explain, with everything the runner needs to feed it."""

    name: str
    model: nn.Module  # eval mode, returns logits [B,K]
    preprocess: Preprocess
    class_names: list[str]
    label_space: str  # datasets must share it ("imagenet", "shapes", "voc", "coco")
    weights_id: str  # stable identity of the weights, part of cache and run keys
    cam_layer: str | None = None  # dotted module name of the default CAM layer
    multilabel: bool = False
    # how the CAM layer's tokens read as [B,C,h,w] (transformers); None: a CNN's map.
    # The model carries it too (faithbench.tokens.token_layout), where methods read it.
    token_layout: TokenLayout | None = None
    # the files the weights were read from, when they decide ``weights_id`` with the
    # entry's code and config (a sweep skips finished jobs from their sizes and times,
    # ``faithbench.sweep``); None: something else decides it (a module built in Python)
    weights_files: tuple[str, ...] | None = None

    @property
    def activation(self) -> Literal["softmax", "sigmoid"]:
        return "sigmoid" if self.multilabel else "softmax"


# What the runner injects into a method or metric that declares it in ``register(context=...)``:
# layer: the model's CAM layer; seed: the run seed; activation: the model's output
# activation; num_classes: its label-space size; preprocess: its Preprocess; explain: the
# evaluated method as ``explain(x, target) -> [B,H,W]``; truth (methods): the batch being
# explained (its ``Batch``, rows aligned with x: masks, boxes), for oracle maps made from
# the ground truth. Each fills its parameter of the same name when that is None (null in
# the config).
Context = Literal["layer", "seed", "activation", "num_classes", "preprocess", "explain", "truth"]
# Context that only the runner can give (objects, not config values): a config must leave it null.
RUNNER_CONTEXT: frozenset[str] = frozenset({"preprocess", "explain", "truth"})
Cost = Literal["free", "forward", "backward", "perturbation"]


@dataclass(frozen=True)
class MethodInfo:
    """Capabilities of an attribution method: ``context`` it always uses, ``optional_context``
    it is given but may do without (captum's ``layer`` for non-layer classes; integrated
    gradients' ``seed`` for its uniform baseline only), and its ``cost`` class. The flags
    the runner and ``faithbench list`` read are derived from these."""

    context: frozenset[Context] = frozenset()
    optional_context: frozenset[Context] = frozenset()
    cost: Cost = "backward"
    # The models it explains: "any", or a kind such as "vit" (the attention methods)
    # whose ``check_model(model)`` raises a ConfigError for a model it cannot explain;
    # the runner calls it before any run opens, and skips the job in a sweep.
    models: str = "any"
    check_model: Callable[[nn.Module], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "context", frozenset(self.context))
        object.__setattr__(self, "optional_context", frozenset(self.optional_context))
        if (self.models == "any") != (self.check_model is None):
            raise ValueError(f"models={self.models!r} needs check_model exactly when it is not 'any'")

    @property
    def injected(self) -> frozenset[str]:
        """Every context name the runner fills."""
        return self.context | self.optional_context

    @property
    def needs_layer(self) -> bool:
        """Takes ``layer`` and cannot run without one (the model's cam_layer by default)."""
        return "layer" in self.context

    @property
    def stochastic(self) -> bool:
        """Its maps depend on ``seed`` in every setting."""
        return "seed" in self.context

    @property
    def needs_grad(self) -> bool:
        """Needs autograd through the model."""
        return self.cost == "backward"

    @property
    def model_free(self) -> bool:
        """Does not look at the model (controls such as ``edge``)."""
        return self.cost == "free"

    @property
    def oracle(self) -> bool:
        """Made from the ground truth (``truth``): a reference map, not an explanation."""
        return "truth" in self.context

    def describe(self) -> dict[str, Any]:
        """The capabilities ``faithbench list`` shows."""
        return {"needs_layer": self.needs_layer, "needs_grad": self.needs_grad,
                "stochastic": self.stochastic, "cost": self.cost, "model_free": self.model_free,
                "models": None if self.models == "any" else self.models}


@dataclass(frozen=True)
class MetricInfo:
    """How to read a metric's outputs. ``higher_is_better`` is for the output named
    like the metric; ``outputs`` gives the direction of any other scalar outputs;
    ``context`` is what the runner injects (see ``Context``)."""

    higher_is_better: bool
    needs: frozenset[GroundTruth] = frozenset()
    # the dataset-level statistic of the metric's scores (default: the mean with its
    # bootstrap CI); e.g. pointing_game's class mean, max_box_acc's curve max
    aggregate: Aggregation = MEAN
    context: frozenset[Context] = frozenset()
    outputs: Mapping[str, bool] = field(default_factory=dict)
    # x-axis label of each [B,T] curve output in report figures, e.g.
    # {"max_sensitivity_curve": "noise level (L-inf radius)"}; x positions come from an
    # optional "<key>_x" [B,T] output, else T points evenly over [0, 1].
    curve_axes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", frozenset(self.needs))
        object.__setattr__(self, "context", frozenset(self.context))
        if not isinstance(self.aggregate, Aggregation):
            raise TypeError(f"aggregate={self.aggregate!r} is not an Aggregation; valid: "
                            "faithbench.aggregate.MEAN, CLASS_MEAN, or an Aggregation(name, fn)")

    @property
    def injected(self) -> frozenset[str]:
        """Every context name the runner fills."""
        return self.context

    @property
    def needs_explain(self) -> bool:
        """Takes ``explain(x, target) -> heatmap``, the evaluated method."""
        return "explain" in self.context

    def direction(self, name: str, key: str) -> bool | None:
        """higher_is_better of output ``key`` of metric ``name``; None for non-scores."""
        return self.higher_is_better if key == name else self.outputs.get(key)

    def describe(self) -> dict[str, Any]:
        """The metadata ``faithbench list`` shows."""
        return {"higher_is_better": self.higher_is_better, "needs": self.needs,
                "aggregate": self.aggregate.name, "needs_explain": self.needs_explain,
                "outputs": self.outputs, "curve_axes": self.curve_axes}


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset entry (the builder returns a BenchDataset)."""

    needs_root: bool = False
    label_space: str | None = None  # None: known once built (set by a parameter)
    # The built dataset re-renders samples without a cue (``interventions(indices)``): the
    # runner verifies which cue the model uses before scoring (``faithbench.truth``).
    interventions: bool = False
