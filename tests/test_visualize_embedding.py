"""Representation space: features are the classifier's input, PCA matches scikit-learn,
t-SNE and PCA give one point per image, neighbours match a loop, thumbnails land where
their points are."""

from __future__ import annotations

import pytest
import torch

from faithbench import datasets, models
from faithbench.visualize._context import VizContext
from faithbench.visualize.embedding import (collect, features, pca_2d, reduce_2d,
                                            thumbnail_map, tsne_2d)
from faithbench.visualize.neighbours import nearest


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ctx():
    spec = models.load("shapes_cnn")
    ds = datasets.build("shapes", spec.preprocess, n=40)
    return VizContext(spec, torch.device("cpu"), ds, list(range(40)), seed=0, batch_size=16)


def test_penultimate_features_are_the_pooled_last_block(ctx):
    m = ctx.model
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        ref = m.pool(m.block3(m.block2(m.block1(x)))).flatten(1)
    assert torch.allclose(features(m, x), ref, atol=1e-6)
    assert torch.allclose(features(m, x, "block3"), ref, atol=1e-6)  # GAP of a named layer


def test_pca_matches_scikit_learn_up_to_sign():
    from sklearn.decomposition import PCA

    x = torch.randn(50, 7, generator=torch.Generator().manual_seed(0)) * torch.arange(1, 8)
    ours = pca_2d(x).double()
    ref = torch.from_numpy(PCA(2).fit_transform(x.double().numpy()))
    for j in range(2):
        s = torch.sign((ours[:, j] * ref[:, j]).sum())
        assert torch.allclose(ours[:, j] * s, ref[:, j], atol=1e-4)


def test_one_point_per_image_for_pca_and_tsne(ctx):
    fs = collect(ctx, ctx.batches(), None, thumb=8)
    assert fs.features.shape == (40, 64) and fs.thumbs.shape == (40, 3, 8, 8)
    assert fs.index.tolist() == list(range(40))
    assert torch.equal(fs.labels, torch.stack([ctx.dataset[i].label for i in range(40)]))
    for method in ("pca", "tsne"):
        pts = reduce_2d(fs.features, method, perplexity=30.0, seed=0)
        assert pts.shape == (40, 2) and torch.isfinite(pts).all()
    # classes separate in t-SNE: a point's nearest neighbour mostly shares its label
    pts = tsne_2d(fs.features, 10.0, seed=0)
    d = torch.cdist(pts, pts) + torch.eye(40) * 1e9
    assert (fs.labels[d.argmin(1)] == fs.labels).float().mean() > 0.8


def test_nearest_matches_a_loop():
    q = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    db = torch.randn(20, 5, generator=torch.Generator().manual_seed(1))
    db[7] = q[1]  # the query itself in the database: left out
    exclude = torch.zeros(3, 20, dtype=torch.bool)
    exclude[1, 7] = True
    d, idx = nearest(torch.cdist(q, db), 4, exclude)
    for r in range(3):
        ref = sorted((float(((q[r] - db[j]) ** 2).sum().sqrt()), j) for j in range(20)
                     if not (r == 1 and j == 7))[:4]
        assert idx[r].tolist() == [j for _, j in ref]
        assert d[r].tolist() == pytest.approx([v for v, _ in ref], rel=1e-5)


def test_thumbnail_map_places_images_at_their_points():
    pts = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    thumbs = torch.stack([torch.full((3, 4, 4), v) for v in (0.1, 0.2, 0.3)])
    c = thumbnail_map(pts, thumbs, size=20)
    assert (c[:, 16:20, 0:4] == 0.1).all()  # (0, 0): bottom left
    assert (c[:, 0:4, 16:20] == 0.2).all()  # (1, 1): top right
    assert (c[:, 0:4, 0:4] == 0.3).all()  # (0, 1): top left
    assert (c[:, 8:12, 8:12] == 1).all()  # nothing in the middle
