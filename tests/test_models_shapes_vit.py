"""The bundled ``shapes_vit``: a timm VisionTransformer, held-out accuracy, token layout
and CAM layer, shipped weights, and a run through the runner."""

from __future__ import annotations

import pytest
import torch

from faithbench import datasets, models
from faithbench.datasets._synth import CLASS_SHAPES
from faithbench.methods import get
from faithbench.models.shapes_vit import WEIGHTS
from faithbench.tokens import TokenLayout, token_layout

pytest.importorskip("timm")


@pytest.fixture(scope="module")
def spec():
    return models.load("shapes_vit")


def test_held_out_accuracy_at_least_97_percent(spec):
    # Seed 0 is never seen in training (the script trains on seed 12345).
    ds = datasets.build("shapes", spec.preprocess, n=400, seed=0)
    samples = [ds[i] for i in range(len(ds))]
    x = torch.stack([s.image for s in samples])
    y = torch.stack([s.label for s in samples])
    with torch.no_grad():
        acc = (spec.model(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.97, acc


def test_is_a_timm_vit_with_its_layout(spec):
    from timm.models.vision_transformer import VisionTransformer

    assert type(spec.model) is VisionTransformer  # attention methods read blocks[i].attn
    assert spec.label_space == "shapes" and spec.class_names == list(CLASS_SHAPES)
    assert spec.cam_layer == "blocks.1.norm1" and len(spec.model.blocks) == 2
    assert spec.token_layout == token_layout(spec.model) == TokenLayout(prefix_tokens=1)
    assert not any(p.requires_grad for p in spec.model.parameters())
    x = torch.randn(2, 3, 64, 64)
    lm = __import__("faithbench.methods.grad_cam", fromlist=["x"]).layer_map(
        spec.model, x, torch.tensor([0, 3]), spec.cam_layer)
    assert lm.shape == (2, 8, 8)  # 8x8 patch tokens


def test_trunk_is_shapes_cnns(spec):
    cnn = models.load("shapes_cnn").model
    ours = spec.model.patch_embed.backbone.state_dict()
    theirs = torch.nn.Sequential(cnn.block1, cnn.block2, cnn.block3).state_dict()
    assert ours.keys() == theirs.keys()
    # Every weight and running statistic; BatchNorm's batch counters, unused at
    # inference, counted the training steps.
    same = [k for k in ours if not k.endswith("num_batches_tracked")]
    assert len(same) == 20 and all(torch.equal(ours[k], theirs[k]) for k in same)


def test_weights_are_small_and_a_plain_state_dict():
    assert WEIGHTS.stat().st_size < 1_000_000
    state = torch.load(WEIGHTS, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_runs_through_the_runner(workdir):
    from faithbench.cli import compose
    from faithbench.run import run

    res = run(compose(["model=shapes_vit", "dataset=shapes", "dataset.limit=4",
                       "batch_size=4", "method=grad_cam", "metrics=[deletion]",
                       "figures.grid=0", "device=cpu"]))
    assert res["n_samples"] == 4 and 0 <= res["deletion"] <= 1


def test_cam_is_refused_with_the_reason(spec):
    from faithbench.errors import ConfigError

    with pytest.raises(ConfigError, match="class token"):
        get("cam").fn(spec.model, torch.randn(1, 3, 64, 64), torch.tensor([0]),
                      layer=spec.cam_layer)
