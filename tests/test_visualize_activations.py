"""Activations: top patches are the true top activations (against a loop over every
position), receptive fields match hand-computed and gradient-derived geometry, crops
cut the right pixels, filter grids are laid out as documented."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from faithbench import models
from faithbench.errors import ConfigError
from faithbench.types import Batch
from faithbench.visualize._draw import tile
from faithbench.visualize._layers import capture, first_conv, stage_layers
from faithbench.visualize._receptive_field import Field, crop, receptive_field
from faithbench.visualize.activations import layer_output, top_activations
from faithbench.visualize.filters import channel_kernels, filter_images


def _batches(images: torch.Tensor, size: int) -> list[Batch]:
    out = []
    for s in range(0, len(images), size):
        x = images[s : s + size]
        out.append(Batch(images=x, labels=torch.zeros(len(x), dtype=torch.int64),
                         ids=[str(i) for i in range(s, s + len(x))],
                         index=torch.arange(s, s + len(x)) + 100))
    return out


@pytest.mark.parametrize("per_image", [True, False])
def test_top_activations_match_a_loop_over_all_positions(tiny_cnn, per_image):
    images = torch.randn(11, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    k = 5
    top = top_activations(tiny_cnn, _batches(images, 4), "features.5", k, per_image)
    acts = tiny_cnn.features(images).detach()  # [N,C,h,w]: signed conv outputs, no ties
    n, c, h, w = acts.shape
    for ch in range(c):
        cands = []
        for i in range(n):
            best = None
            for y in range(h):
                for x in range(w):
                    v = acts[i, ch, y, x].item()
                    if per_image:
                        if best is None or v > best[0]:
                            best = (v, i + 100, y, x)
                    else:
                        cands.append((v, i + 100, y, x))
            if per_image:
                cands.append(best)
        cands.sort(key=lambda t: -t[0])
        got = list(zip(top.values[ch].tolist(), top.index[ch].tolist(), top.y[ch].tolist(),
                       top.x[ch].tolist()))
        assert [g[1:] for g in got] == [t[1:] for t in cands[:k]]
        assert [g[0] for g in got] == pytest.approx([t[0] for t in cands[:k]], rel=1e-5)
    per_max = acts.flatten(2).amax(2).mean(0)
    assert torch.allclose(top.mean_max, per_max, rtol=1e-5)


def test_receptive_field_of_a_hand_computed_chain():
    chain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 4, 3, stride=2), nn.Conv2d(4, 4, 3, dilation=2, padding=2))
    # r: 3 -> 3+1*1=4 -> 4+2*2=8 -> 8+4*4=24; jump 1 -> 2 -> 4 -> 4; start -1 -> -1 -> -1 -> -1-2*4=-9
    assert receptive_field(chain, "4", (32, 32)) == Field((24, 24), (4, 4), (-9, -9))
    assert receptive_field(chain, "2", (32, 32)) == Field((4, 4), (2, 2), (-1, -1))
    f = receptive_field(chain, "4", (32, 32))
    assert f.box(1, 2) == (-5, -1, 19, 23)
    img = (torch.arange(32)[:, None] * 100 + torch.arange(32)[None, :]).float().expand(3, 32, 32)
    c = crop(img, f, 1, 2, fill=-1.0)
    assert c.shape == (3, 24, 24)
    assert (c[:, :5] == -1).all() and (c[:, :, :1] == -1).all()  # rows -5..-1, column -1
    assert c[0, 5, 1].item() == 0 * 100 + 0  # image pixel (0, 0)
    assert c[0, 23, 23].item() == 18 * 100 + 22
    with pytest.raises(ConfigError, match="layer 'nope'"):
        receptive_field(chain, "nope", (32, 32))


class _Residual(nn.Module):
    """TF-"SAME" stem, a residual block whose strided 1x1 shortcut runs after its main
    path, then a plain conv: all linear, so the gradient support is the receptive field."""

    def __init__(self) -> None:
        super().__init__()
        from timm.layers import Conv2dSame

        self.stem = Conv2dSame(3, 1, 3, stride=2)
        self.a = nn.Conv2d(1, 1, 3, stride=2, padding=1)
        self.b = nn.Conv2d(1, 1, 3, padding=1)
        self.short = nn.Conv2d(1, 1, 1, stride=2)
        self.head = nn.Conv2d(1, 1, 3, padding=1)
        for p in self.parameters():
            nn.init.constant_(p, 0.1)

    def forward(self, x):
        s = self.stem(x)
        y = self.b(self.a(s)) + self.short(s)
        return self.head(y)


@pytest.mark.parametrize("size", [32, 33])
def test_receptive_field_equals_the_gradient_support(size):
    model = _Residual()
    f = receptive_field(model, "head", (size, size))
    x = torch.randn(1, 3, size, size, requires_grad=True)
    out = model(x)
    for y, xx in [(0, 0), (2, 3), (out.shape[-2] - 1, out.shape[-1] - 1)]:
        (g,) = torch.autograd.grad(out[0, 0, y, xx], x, retain_graph=True)
        g = g[0].abs().sum(0)
        rows, cols = g.sum(1).nonzero()[:, 0], g.sum(0).nonzero()[:, 0]
        t, l, b, r = f.box(y, xx)
        assert (rows.min().item(), rows.max().item() + 1) == (max(t, 0), min(b, size))
        assert (cols.min().item(), cols.max().item() + 1) == (max(l, 0), min(r, size))


def test_shapes_cnn_fields_stages_and_layer_outputs():
    spec = models.load("shapes_cnn")
    m = spec.model
    assert receptive_field(m, "block3", (64, 64)) == Field((26, 26), (4, 4), (-11, -11))
    assert stage_layers(m, (64, 64)) == ["block1.2", "block1", "block3"]
    assert first_conv(m) == "block1.0"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(layer_output(m, x, "block2"), m.block2(m.block1(x)))
        got = capture(m, x, ["block1", "block3"])
        assert torch.allclose(got["block3"], m.block3(m.block2(m.block1(x))))
    assert all(not mod._forward_hooks for mod in m.modules())


def test_tile_layout():
    imgs = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 1, 2, 3)
    g = tile(imgs, ncol=2, pad=1, pad_value=-1)
    assert g.shape == (1, 3 * 3 - 1, 2 * 4 - 1)
    for i in range(5):
        r, c = divmod(i, 2)
        assert (g[0, r * 3 : r * 3 + 2, c * 4 : c * 4 + 3] == i).all()
    assert (g[0, 2, :] == -1).all() and (g[0, :, 3] == -1).all()
    assert (g[0, 6:8, 4:7] == -1).all()  # the empty sixth cell


def test_filter_images_and_channel_kernels():
    w = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    im = filter_images(w)
    peak = w.abs().amax((1, 2, 3))
    assert torch.allclose(im, 0.5 + 0.5 * w / peak.view(4, 1, 1, 1))
    assert im.min() >= 0 and im.max() <= 1
    assert torch.allclose(filter_images(w, bgr=True), im.flip(1))
    with pytest.raises(ConfigError, match="3 input channels"):
        filter_images(torch.randn(4, 8, 3, 3))
    w = torch.randn(6, 8, 3, 3)
    k, cols = channel_kernels(w, max_out=4, max_in=5)
    assert cols == 5 and k.shape == (20, 1, 3, 3)
    peak = w[:4, :5].abs().amax((1, 2, 3))
    for o in range(4):
        for i in range(5):
            assert torch.allclose(k[o * 5 + i, 0], 0.5 + 0.5 * w[o, i] / peak[o])
