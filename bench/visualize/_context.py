"""What a visualisation entry receives (model, images, device, seed) and returns."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from faithbench.errors import ConfigError, unknown_choice
from faithbench.types import Batch, BenchDataset, ModelSpec, stack


@dataclass
class VizResult:
    """Figures to save (``{stem: figure}``, one PNG each) and scalars to log."""

    figures: dict[str, Figure]
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class VizContext:
    """A loaded model on its device and the selected samples of a dataset.

    ``indices`` are the dataset positions the job selected (limit, subset, shard
    applied); ``image=<int>`` parameters are positions in the dataset itself. The job
    passes ``load`` instead of a dataset: it is built (and its label space checked) on
    first use only, so a visualisation of image files never reads a dataset.
    """

    spec: ModelSpec
    device: torch.device
    dataset: BenchDataset | None = None
    indices: list[int] = field(default_factory=list)
    seed: int = 0
    batch_size: int = 32
    load: Callable[[], tuple[BenchDataset, list[int]]] | None = None

    @property
    def model(self) -> torch.nn.Module:
        return self.spec.model

    def _need_dataset(self) -> BenchDataset:
        if self.dataset is None and self.load is not None:
            self.dataset, self.indices = self.load()
        if self.dataset is None:
            raise ConfigError("this visualisation needs a dataset (dataset=<name>)")
        return self.dataset

    def selection(self) -> list[int]:
        """The selected dataset positions (the dataset is loaded if it is not yet)."""
        self._need_dataset()
        return self.indices

    def batches(self, indices: Sequence[int] | None = None) -> Iterator[Batch]:
        """The samples at ``indices`` (default: the selection) in batches of one image
        size, on the device; unreadable samples are skipped."""
        ds = self._need_dataset()
        todo = list(self.selection() if indices is None else indices)
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s : s + self.batch_size]
            good = [(i, ds[i]) for i in chunk]
            good = [(i, x) for i, x in good if x is not None]
            for shape in dict.fromkeys(tuple(x.image.shape) for _, x in good):
                group = [(i, x) for i, x in good if tuple(x.image.shape) == shape]
                yield stack([x for _, x in group], [i for i, _ in group]).to(self.device)

    def gather(self, indices: Sequence[int] | None = None) -> Batch:
        """All samples at ``indices`` as one batch (they must share one image size)."""
        parts = list(self.batches(indices))
        if not parts:
            raise ConfigError("no readable samples were selected")
        if len({tuple(b.images.shape[1:]) for b in parts}) > 1:
            raise ConfigError("the selected images differ in size; choose a model whose "
                              "preprocessing gives one size (resize=center_crop or stretch)")
        return Batch(images=torch.cat([b.images for b in parts]),
                     labels=torch.cat([b.labels for b in parts]),
                     ids=[i for b in parts for i in b.ids],
                     index=torch.cat([b.index for b in parts]))

    def image(self, ref: int | str) -> Tensor:
        """One model input [1,3,H,W] on the device: a dataset position (int) or an image
        file read and preprocessed for the model."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.lstrip("-").isdigit()):
            ds = self._need_dataset()
            i = int(ref)
            if not 0 <= i < len(ds):
                raise ConfigError(f"image {i} is outside the dataset (0..{len(ds) - 1})")
            s = ds[i]
            if s is None:
                raise ConfigError(f"dataset sample {i} is unreadable")
            return s.image[None].to(self.device)
        from faithbench.datasets._common import make_sample, read_rgb

        path = Path(str(ref)).expanduser()
        img = read_rgb(path) if path.is_file() else None
        if img is None:
            raise ConfigError(f"image {str(ref)!r} is neither a dataset position nor a "
                              "readable image file")
        s = make_sample(self.spec.preprocess, img, torch.tensor(0), str(path))
        return s.image[None].to(self.device)

    def rgb(self, x: Tensor) -> Tensor:
        """Model input [...,3,H,W] -> RGB in [0,1] on the same device (for figures)."""
        return self.spec.preprocess.denormalize(x.detach())


def class_index(spec: ModelSpec, value: int | str) -> int:
    """A class given by index or by name (exactly as in ``spec.class_names``)."""
    if isinstance(value, int) or str(value).isdigit():
        i = int(value)
        if not 0 <= i < len(spec.class_names):
            raise ConfigError(f"class {i} is outside 0..{len(spec.class_names) - 1} of "
                              f"model {spec.name!r}")
        return i
    if value not in spec.class_names:
        raise unknown_choice(f"class of {spec.name}", value, spec.class_names)
    return spec.class_names.index(value)


def class_label(spec: ModelSpec, i: int, width: int = 18) -> str:
    """Short class name for titles (the first synonym of ImageNet names)."""
    name = spec.class_names[i].split(",")[0] if i < len(spec.class_names) else str(i)
    return name if len(name) <= width else name[: width - 1] + "…"


def labels_1d(labels: Tensor) -> Tensor:
    """[B] class ids from [B] labels or [B,K] multi-hot ones (the first positive class)."""
    return labels if labels.dim() == 1 else labels.float().argmax(1)
