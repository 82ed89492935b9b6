"""Representation space: penultimate features over a dataset reduced to 2-D by PCA or
t-SNE (van der Maaten & Hinton, JMLR 2008), drawn as a scatter coloured by class and as
a map of image thumbnails (Karpathy's CNN-code t-SNE maps); nearest neighbours in
feature space beside those in pixel space (Krizhevsky, Sutskever & Hinton, NeurIPS
2012, Fig. 4 right)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.figures import image_axes, plt
from faithbench.types import Batch
from faithbench.visualize import register
from faithbench.visualize._context import VizContext, VizResult, class_label, labels_1d
from faithbench.visualize._draw import to_numpy_image
from faithbench.visualize._layers import capture, last_linear

REDUCERS = ("pca", "tsne")


def features(model: nn.Module, x: Tensor, layer: str | None = None) -> Tensor:
    """Penultimate features [B,D]: the input of the last ``nn.Linear`` when ``layer`` is
    None, else ``layer``'s output (global-average-pooled if it is [B,C,h,w])."""
    with torch.no_grad():
        if layer is None:
            name = last_linear(model)
            f = capture(model, x, [name], inputs=True)[name]
        else:
            f = capture(model, x, [layer])[layer]
    f = f.float()
    return f.mean((-2, -1)) if f.dim() == 4 else f.flatten(1)


@dataclass
class FeatureSet:
    """Features of the selected samples, in dataset order of the batches."""

    features: Tensor  # [N,D]
    labels: Tensor  # [N] int64
    index: Tensor  # [N] int64 dataset positions
    thumbs: Tensor  # [N,3,t,t] RGB in [0,1], CPU


def collect(ctx: VizContext, batches: Iterable[Batch], layer: str | None, thumb: int) -> FeatureSet:
    """One pass over ``batches``: features, labels, positions and small thumbnails."""
    fs, ls, ix, th = [], [], [], []
    for b in batches:
        fs.append(features(ctx.model, b.images, layer))
        ls.append(labels_1d(b.labels).cpu())
        ix.append(b.index)
        th.append(F.interpolate(ctx.rgb(b.images), size=(thumb, thumb), mode="bilinear",
                                antialias=True, align_corners=False).cpu())
    if not fs:
        raise ConfigError("no readable images were selected")
    return FeatureSet(torch.cat(fs), torch.cat(ls), torch.cat(ix), torch.cat(th).clamp(0, 1))


def pca_2d(x: Tensor) -> Tensor:
    """Projection of the centred rows of ``x`` [N,D] on its first two principal axes,
    each axis signed so that its largest loading is positive. Returns [N,2]."""
    xc = x.double() - x.double().mean(0)
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    axes = vh[:2]
    sign = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    out = xc @ (axes * sign).T
    return torch.cat([out, out.new_zeros(len(x), 2 - out.shape[1])], 1).float()


def tsne_2d(x: Tensor, perplexity: float = 30.0, seed: int = 0) -> Tensor:
    """t-SNE embedding [N,2] of ``x`` [N,D] with scikit-learn (PCA initialisation, the
    automatic learning rate). The perplexity is lowered to (N - 1) / 3 for small sets."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ConfigError("t-SNE needs scikit-learn: pip install scikit-learn "
                          "(or use viz.methods=[pca])") from None
    if len(x) < 4:
        raise ConfigError(f"t-SNE needs at least 4 images, got {len(x)}")
    p = min(perplexity, (len(x) - 1) / 3)
    y = TSNE(2, perplexity=p, init="pca", learning_rate="auto",
             random_state=seed).fit_transform(x.double().cpu().numpy())
    return torch.from_numpy(y).float()


def reduce_2d(x: Tensor, method: str, perplexity: float = 30.0, seed: int = 0) -> Tensor:
    """[N,D] -> [N,2] by ``method`` ("pca" or "tsne")."""
    if method == "pca":
        return pca_2d(x)
    if method == "tsne":
        return tsne_2d(x, perplexity, seed)
    raise ConfigError(f"unknown reduction {method!r}; valid: {', '.join(REDUCERS)}")


def thumbnail_map(points: Tensor, thumbs: Tensor, size: int = 1024) -> Tensor:
    """Thumbnails pasted at their 2-D positions on a white canvas (later ones on top).

    Args:
        points: [N,2] (x, y); thumbs: [N,3,t,t]; size: canvas side in pixels.

    Returns:
        [3,size,size] RGB in [0,1].
    """
    t = thumbs.shape[-1]
    p = points.cpu().double()
    p = (p - p.min(0).values) / (p.max(0).values - p.min(0).values).clamp_min(1e-12)
    xy = (p * (size - t)).round().long()
    canvas = torch.ones(3, size, size)
    for (x, y), im in zip(xy.tolist(), thumbs):
        canvas[:, size - t - y : size - y, x : x + t] = im  # y up, as in the scatter
    return canvas


def scatter_figure(points: Tensor, labels: Tensor, names: list[str], title: str) -> plt.Figure:
    """[N,2] points coloured by class [N]; a legend when there are at most 20 classes."""
    fig, ax = plt.subplots(figsize=(5, 4.2))
    classes = sorted(set(labels.tolist()))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    p = points.cpu().numpy()
    for i, c in enumerate(classes):
        m = (labels == c).numpy()
        ax.scatter(p[m, 0], p[m, 1], s=9, color=cmap(i % cmap.N),
                   label=names[c] if c < len(names) else str(c))
    if len(classes) <= 20:
        ax.legend(fontsize=6, markerscale=1.5, frameon=False, loc="best")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


@register(dataset_wide=True)
def embedding(ctx: VizContext, layer: str | None = None, methods: Sequence[str] = ("pca", "tsne"),
              perplexity: float = 30.0, thumb: int = 32, canvas: int = 1024) -> VizResult:
    """Penultimate features of the selected samples in 2-D: a scatter coloured by label
    and a thumbnail map per reduction method.

    Args:
        layer: None: the input of the last nn.Linear; else a layer's (pooled) output.
        methods: reductions to draw, "pca" and/or "tsne" (t-SNE needs scikit-learn).
        perplexity: t-SNE perplexity (lowered for sets under 91 images).
        thumb, canvas: thumbnail and thumbnail-map sides in pixels.
    """
    for m in methods:
        if m not in REDUCERS:
            raise ConfigError(f"unknown reduction {m!r}; valid: {', '.join(REDUCERS)}")
    fs = collect(ctx, ctx.batches(), layer, thumb)
    names = [class_label(ctx.spec, i) for i in range(len(ctx.spec.class_names))]
    where = layer or f"input of {last_linear(ctx.model)}"
    figs = {}
    for m in methods:
        pts = reduce_2d(fs.features, m, perplexity, ctx.seed)
        what = f"{ctx.spec.name} {where} ({fs.features.shape[1]}-D), {len(pts)} images, {m}"
        figs[f"{m}_scatter"] = scatter_figure(pts, fs.labels, names, what)
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(to_numpy_image(thumbnail_map(pts, fs.thumbs, canvas)))
        ax.set_title(what, fontsize=8)
        image_axes(ax)
        fig.tight_layout()
        figs[f"{m}_thumbnails"] = fig
    return VizResult(figs, {"n_images": float(len(fs.labels)),
                            "feature_dim": float(fs.features.shape[1])})
