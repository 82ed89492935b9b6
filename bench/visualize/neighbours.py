"""Nearest neighbours of query images in feature space beside their neighbours in pixel
space (Krizhevsky, Sutskever & Hinton, NeurIPS 2012, Sec. 6.1 and Fig. 4 right: images
close in the last hidden layer are semantically alike although far apart in pixels)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from faithbench.errors import ConfigError
from faithbench.figures import image_axes, plt
from faithbench.visualize import register
from faithbench.visualize._context import VizContext, VizResult, class_label, labels_1d
from faithbench.visualize._draw import to_numpy_image
from faithbench.visualize.embedding import features


def nearest(dist: Tensor, k: int, exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The k smallest distances per row.

    Args:
        dist: [Q,N] distances from each query to each database item.
        k: neighbours kept (at most the number of items left).
        exclude: [Q,N] bool, items that may not be a query's neighbour (the query itself).

    Returns:
        (distances [Q,k], database columns [Q,k]), nearest first.
    """
    if exclude is not None:
        dist = dist.masked_fill(exclude, float("inf"))
    k = min(k, dist.shape[1] - (0 if exclude is None else int(exclude.sum(1).max())))
    d, i = dist.topk(k, dim=1, largest=False)
    return d, i


def neighbour_figure(rows: list[list[Tensor]], titles: list[list[str]], heads: list[str]) -> plt.Figure:
    """One row per query: the query, then neighbour groups; ``heads`` title each group
    (the first group is the query column). Images are RGB [3,H,W] in [0,1]."""
    n_rows, n_cols = len(rows), len(rows[0])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(0.8 * n_cols, 0.95 * n_rows + 0.3),
                             squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.imshow(to_numpy_image(rows[r][c]))
            ax.set_title(titles[r][c], fontsize=5, pad=2)
            image_axes(ax)
    k = (n_cols - 1) // 2
    for g, head in enumerate(heads):
        col = 0 if g == 0 else 1 + (g - 1) * k + k // 2
        axes[0][col].text(0.5, 1.35, head, transform=axes[0][col].transAxes, ha="center",
                          va="bottom", fontsize=7, weight="bold")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88, wspace=0.08, hspace=0.3)
    return fig


@register(dataset_wide=True)
def neighbours(ctx: VizContext, layer: str | None = None, queries: Sequence[int] = (0, 1, 2, 3),
               k: int = 5) -> VizResult:
    """Each query's k nearest selected samples by Euclidean distance between features
    (penultimate by default) and between RGB pixels; the query itself is left out.

    Args:
        layer: None: the input of the last nn.Linear; else a layer's (pooled) output.
        queries: dataset positions of the query images.
        k: neighbours per query and space.
    """
    if not queries:
        raise ConfigError("neighbours needs at least one query (viz.queries=[0,1])")
    q = ctx.gather(list(queries))
    qf, qp = features(ctx.model, q.images, layer), ctx.rgb(q.images).flatten(1)
    fd, pd_, idx, labels = [], [], [], []
    for b in ctx.batches():
        if b.images.shape[1:] != q.images.shape[1:]:
            raise ConfigError("pixel distances need one image size for queries and dataset")
        fd.append(torch.cdist(qf.double(), features(ctx.model, b.images, layer).double()))
        pd_.append(torch.cdist(qp.double(), ctx.rgb(b.images).flatten(1).double()))
        idx.append(b.index)
        labels.append(labels_1d(b.labels).cpu())
    index, labels = torch.cat(idx), torch.cat(labels)
    same = q.index[:, None] == index[None, :]
    _, f_nn = nearest(torch.cat(fd, 1).cpu(), k, same)
    _, p_nn = nearest(torch.cat(pd_, 1).cpu(), k, same)
    pics = ctx.gather(sorted(set(index[f_nn].flatten().tolist() + index[p_nn].flatten().tolist())))
    where = {int(i): j for j, i in enumerate(pics.index.tolist())}
    rgb_all, rgb_q = ctx.rgb(pics.images), ctx.rgb(q.images)
    qlab = labels_1d(q.labels).cpu()
    rows, titles = [], []
    for r in range(len(q.index)):
        cols = [rgb_q[r]] + [rgb_all[where[int(index[j])]] for j in (*f_nn[r], *p_nn[r])]
        labs = [int(qlab[r])] + [int(labels[j]) for j in (*f_nn[r], *p_nn[r])]
        rows.append(cols)
        titles.append([class_label(ctx.spec, c, 12) for c in labs])
    fig = neighbour_figure(rows, titles, ["query", f"feature space ({layer or 'penultimate'})",
                                          "pixel space"])
    same_f = (labels[f_nn] == qlab[:, None]).float().mean().item()
    same_p = (labels[p_nn] == qlab[:, None]).float().mean().item()
    return VizResult({"neighbours": fig}, {"feature_nn_same_label": same_f,
                                           "pixel_nn_same_label": same_p})
