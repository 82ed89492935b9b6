"""The bundled ``shapes_cnn``: held-out accuracy, CAM structure, shipped weights."""

from __future__ import annotations

import torch

from faithbench import datasets, models
from faithbench.datasets._synth import CLASS_SHAPES
from faithbench.models.shapes_cnn import WEIGHTS


def test_held_out_accuracy_at_least_97_percent():
    spec = models.load("shapes_cnn")
    # Seed 0 is never seen in training (the script trains on seed 12345).
    ds = datasets.build("shapes", spec.preprocess, n=400, seed=0)
    samples = [ds[i] for i in range(len(ds))]
    x = torch.stack([s.image for s in samples])
    y = torch.stack([s.label for s in samples])
    with torch.no_grad():
        acc = (spec.model(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.97, acc


def test_spec_and_cam_identity():
    spec = models.load("shapes_cnn")
    assert spec.label_space == "shapes" and spec.class_names == list(CLASS_SHAPES)
    assert not spec.multilabel and len(spec.weights_id) == 64
    m = spec.model
    assert not any(p.requires_grad for p in m.parameters())
    assert all(not getattr(r, "inplace", False) for r in m.modules()
               if isinstance(r, torch.nn.ReLU))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        feats = dict(m.named_modules())[spec.cam_layer](m.block2(m.block1(x)))  # [3,64,16,16]
        # GAP then linear: logits = spatial mean of the class activation maps + bias (CAM).
        cams = torch.einsum("kc,bchw->bkhw", m.fc.weight, feats)
        assert feats.shape[-2:] == (16, 16)
        assert torch.allclose(cams.mean((2, 3)) + m.fc.bias, m(x), atol=1e-5)


def test_weights_are_small_and_a_plain_state_dict():
    assert WEIGHTS.stat().st_size < 1_000_000
    state = torch.load(WEIGHTS, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
