"""``shapes_cnn_gmp``: the bundled shapes network with global max pooling (CAM paper's
GMP variant): held-out accuracy, pooling structure, CAM exact on it, shipped weights."""

from __future__ import annotations

import pytest
import torch

from faithbench import config, datasets, models
from faithbench.methods import get
from faithbench.models.shapes_cnn import WEIGHTS_GMP, ShapesCNN


@pytest.fixture(scope="module")
def gmp():
    return models.load("shapes_cnn_gmp")


def block3(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature maps, computed without hooks: [B,64,H/4,W/4]."""
    return m.block3(m.block2(m.block1(x)))


def test_held_out_accuracy_at_least_97_percent(gmp):
    # Seed 0 is never seen in training (the script trains on seed 12345).
    ds = datasets.build("shapes", gmp.preprocess, n=400, seed=0)
    samples = [ds[i] for i in range(len(ds))]
    x = torch.stack([s.image for s in samples])
    y = torch.stack([s.label for s in samples])
    with torch.no_grad():
        acc = (gmp.model(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.97, acc


def test_logits_are_the_linear_layer_of_the_spatial_max(gmp):
    m = gmp.model
    assert isinstance(m.pool, torch.nn.AdaptiveMaxPool2d) and gmp.cam_layer == "block3"
    x = torch.randn(3, 3, 48, 80, generator=torch.Generator().manual_seed(1))  # non-square
    with torch.no_grad():
        feats = block3(m, x)
        torch.testing.assert_close(m(x), feats.amax((2, 3)) @ m.fc.weight.T + m.fc.bias)
        # ... and not of the spatial mean: the two variants really differ.
        assert not torch.allclose(m(x), m.fc(feats.mean((2, 3))), atol=1e-3)


def test_cam_is_exact_on_the_gmp_model(gmp):
    # CAM (Zhou et al., Sec. 2) is M_c = sum_k w^c_k f_k whatever the pooling; for GMP the
    # logit minus bias is sum_k w^c_k max_xy f_k, the class weights of the same map.
    m = gmp.model
    x = torch.randn(4, 3, 48, 80, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([0, 4, 2, 2])  # per-sample targets, one repeated
    with torch.no_grad():
        ref = torch.einsum("bk,bkhw->bhw", m.fc.weight[target], block3(m, x))
    lm = get("cam").fn.layer_map(m, x, target, layer="block3")
    torch.testing.assert_close(lm, ref, rtol=1e-5, atol=1e-5)
    up = get("cam").fn(m, x, target, layer="block3")
    assert up.shape == (4, 48, 80)
    torch.testing.assert_close(up, torch.nn.functional.interpolate(
        ref[:, None], size=(48, 80), mode="bilinear", align_corners=False)[:, 0])


def test_grad_cam_is_relu_cam_over_area_on_the_gmp_model(gmp):
    # d logit_c / d f_k(x,y) = w^c_k at the argmax of f_k and 0 elsewhere, so Grad-CAM's
    # alpha_k (the spatial mean of the gradient) is w^c_k / (h*w), as under GAP.
    m = gmp.model
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([1, 3])
    c = get("cam").fn.layer_map(m, x, target, layer="block3")
    g = get("grad_cam").fn.layer_map(m, x, target, layer="block3")
    torch.testing.assert_close(g, c.clamp(min=0) / 256, rtol=1e-5, atol=1e-7)


def test_shapes_cnn_keeps_its_pooling_and_config_node():
    assert isinstance(models.load("shapes_cnn").model.pool, torch.nn.AdaptiveAvgPool2d)
    # The GMP variant is a separate entry: shapes_cnn's config node (hence its run
    # keys) is unchanged.
    assert set(config.entry_node("shapes_cnn", models.get("shapes_cnn").fn)) == {"name", "checkpoint"}
    with pytest.raises(ValueError, match="'avg'.*'gap' or 'gmp'"):
        ShapesCNN(pooling="avg")  # type: ignore[arg-type]


def test_weights_are_small_and_a_plain_state_dict():
    assert WEIGHTS_GMP.stat().st_size < 1_000_000
    state = torch.load(WEIGHTS_GMP, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert state.keys() == ShapesCNN().state_dict().keys()
