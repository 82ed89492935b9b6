"""average_drop / increase_in_confidence against a transcription of Grad-CAM++'s released
code, a naive loop of the min-max convention, hand-computed toys, torchcam and
pytorch-grad-cam."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.preprocess import Preprocess

drop = get("average_drop").fn
inc = get("increase_in_confidence").fn
IDENTITY = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


class Brightness(nn.Module):
    """Class 0's softmax probability is the mean of channel 0 (or 1 minus it)."""

    def __init__(self, invert: bool = False) -> None:
        super().__init__()
        self.invert = invert

    def forward(self, x):
        p = x[:, 0].flatten(1).mean(1)
        p = 1 - p if self.invert else p
        return torch.stack([p, 1 - p], 1).log()


def test_toys_by_hand():
    x = torch.full((1, 3, 4, 4), 0.8)
    h = torch.zeros(1, 4, 4)
    h[:, :, :2] = 3.0  # left half explained (normalises to 1), right half 0
    t = torch.tensor([0])
    # Y = 0.8; E keeps the left half, right half black: O = 0.4 -> drop 50 %.
    out = drop(Brightness(), x, h, t, space="pixel", preprocess=IDENTITY)
    assert out["average_drop"].item() == pytest.approx(50.0, abs=1e-4)
    assert out["average_drop_score"].item() == pytest.approx(0.8)
    assert out["average_drop_explained_score"].item() == pytest.approx(0.4)
    assert inc(Brightness(), x, h, t, preprocess=IDENTITY)["increase_in_confidence"].item() == 0.0
    # Inverted model: Y = 0.2, O = 0.6: no drop, -200 % change, confidence increased.
    out = drop(Brightness(True), x, h, t, preprocess=IDENTITY)
    assert out["average_drop"].item() == 0.0
    assert out["average_drop_change"].item() == pytest.approx(-200.0, abs=1e-3)
    assert inc(Brightness(True), x, h, t, preprocess=IDENTITY)["increase_in_confidence"].item() == 100.0


def test_pixel_space_uses_black_of_the_model_normalisation():
    # Normalised space with mean 0.5, std 0.25: a black pixel is -2 in model input.
    pre = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = pre.normalize(torch.full((1, 3, 4, 4), 0.8))
    h = torch.zeros(1, 4, 4)
    h[:, :, :2] = 1.0

    class Pixel(nn.Module):
        def forward(self, z):
            p = (z[:, 0] * 0.25 + 0.5).flatten(1).mean(1)  # mean of channel 0 in [0, 1]
            return torch.stack([p, 1 - p], 1).log()

    out = drop(Pixel(), x, h, torch.tensor([0]), preprocess=pre)
    assert out["average_drop"].item() == pytest.approx(50.0, abs=1e-4)
    # In normalised space the right half becomes the mean colour 0.5: O = (0.8 + 0.5) / 2.
    out = drop(Pixel(), x, h, torch.tensor([0]), space="normalised")
    assert out["average_drop_explained_score"].item() == pytest.approx(0.65, abs=1e-6)
    with pytest.raises(ConfigError, match="needs the model's preprocess"):
        drop(Pixel(), x, h, torch.tensor([0]))


class Scale(nn.Module):
    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = k

    def forward(self, x):
        return x * self.k


def released_code_drop(model, img01, cam, t, pre):
    """Naive transcription of Grad-CAM++'s released pipeline for one image, numpy HWC:
    ``cam = np.maximum(cam, 0); cam = cam / np.max(cam)`` (misc/utils.py), E = cam x the
    RGB image in [0, 1] (vgg_utils.load_image), the model's own scaling and mean
    subtraction applied to E afterwards (vgg16.build). Returns (Y, O)."""
    cam = np.maximum(cam, 0)
    cam = cam / np.max(cam)
    img = img01.permute(1, 2, 0).double().numpy()  # H, W, C
    e = cam[:, :, None] * img
    probs = []
    with torch.no_grad():
        for a in (img, e):
            z = pre.normalize(torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float())
            probs.append(model(z[None]).softmax(1)[0, t].item())
    return probs[0], probs[1]


@pytest.mark.parametrize("pre", [Preprocess(),
                                 # Caffe / tensorflow-vgg style: BGR, 0-255, mean subtraction
                                 Preprocess(mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0),
                                            bgr=True, pixel_scale=255.0)])
def test_relu_max_matches_the_released_code(tiny_cnn, pre):
    model = nn.Sequential(Scale(1 / pre.pixel_scale), tiny_cnn)  # O(1) inputs at 0-255 too
    g = torch.Generator().manual_seed(0)
    img01 = torch.rand(4, 3, 32, 32, generator=g)
    x = pre.normalize(img01)
    h = torch.randn(4, 32, 32, generator=g) + torch.tensor([0.0, 4.0, 0.5, 1.0])[:, None, None]
    assert (h.flatten(1).min(1).values > 0).any()  # a map with min > 0: minmax would differ
    t = torch.tensor([0, 1, 2, 3])
    out = drop(model, x, h, t, preprocess=pre, chunk=3)
    up = inc(model, x, h, t, preprocess=pre)["increase_in_confidence"]
    for i in range(4):
        y, o = released_code_drop(model, img01[i], h[i].double().numpy(), int(t[i]), pre)
        assert out["average_drop_score"][i].item() == pytest.approx(y, rel=1e-5)
        assert out["average_drop_explained_score"][i].item() == pytest.approx(o, rel=1e-4)
        assert out["average_drop"][i].item() == pytest.approx(max(0.0, y - o) / y * 100, abs=1e-3)
        assert up[i].item() == (100.0 if o > y else 0.0)
    minmax = drop(model, x, h, t, preprocess=pre, normalisation="minmax")
    assert (minmax["average_drop_explained_score"] - out["average_drop_explained_score"]).abs().max() > 1e-3


def test_minmax_matches_naive_loop(tiny_cnn, images):
    pre = Preprocess()
    h = torch.randn(4, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 2, 3])
    out = drop(tiny_cnn, images, h, t, preprocess=pre, normalisation="minmax", chunk=3)
    up = inc(tiny_cnn, images, h, t, preprocess=pre, normalisation="minmax")["increase_in_confidence"]
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    for i in range(4):
        s = (h[i] - h[i].min()) / (h[i].max() - h[i].min())
        e = (s * (images[i] * std + mean) - mean) / std
        with torch.no_grad():
            y = tiny_cnn(images[i:i + 1]).softmax(1)[0, t[i]].item()
            o = tiny_cnn(e[None]).softmax(1)[0, t[i]].item()
        assert out["average_drop"][i].item() == pytest.approx(max(0.0, y - o) / y * 100, abs=1e-4)
        assert up[i].item() == (100.0 if o > y else 0.0)


def test_relu_max_and_minmax_by_hand():
    # Map 3 on the left half, 1 on the right: relu_max keeps 1/3 of the right half,
    # minmax blacks it out. Y = 0.8; O = (0.8 + 0.8/3) / 2 = 0.5333 vs 0.4.
    x = torch.full((1, 3, 4, 4), 0.8)
    h = torch.ones(1, 4, 4)
    h[:, :, :2] = 3.0
    t = torch.tensor([0])
    out = drop(Brightness(), x, h, t, preprocess=IDENTITY)
    assert out["average_drop_explained_score"].item() == pytest.approx(0.8 * 2 / 3, abs=1e-6)
    assert out["average_drop"].item() == pytest.approx(100 / 3, abs=1e-4)
    out = drop(Brightness(), x, h, t, preprocess=IDENTITY, normalisation="minmax")
    assert out["average_drop"].item() == pytest.approx(50.0, abs=1e-4)
    # Negative values are cut by the ReLU: -1 on the right half counts as 0, like minmax here.
    h[:, :, 2:] = -1.0
    out = drop(Brightness(), x, h, t, preprocess=IDENTITY)
    assert out["average_drop"].item() == pytest.approx(50.0, abs=1e-4)
    with pytest.raises(ConfigError, match="'min_max'.*relu_max.*minmax"):
        drop(Brightness(), x, h, t, preprocess=IDENTITY, normalisation="min_max")


def test_constant_negative_and_nan_maps(tiny_cnn, images):
    h = torch.zeros(5, 32, 32)
    h[1] = 2.0
    h[2, 0, 0] = float("nan")
    h[4] = -torch.rand(32, 32, generator=torch.Generator().manual_seed(3))  # max < 0
    t = torch.zeros(5, dtype=torch.long)
    x = torch.cat([images, images[:1]])
    pre = Preprocess()
    black = drop(tiny_cnn, torch.zeros_like(x) + pre.normalize(torch.zeros(3, 1, 1)),
                 torch.ones(5, 32, 32), t, preprocess=pre)["average_drop_score"]
    out = drop(tiny_cnn, x, h, t, preprocess=pre)
    o, y = out["average_drop_explained_score"], out["average_drop_score"]
    # relu_max: max <= 0 explains nothing (E all black); a constant positive map is all
    # ones (relu(L) / max(L) = 1): E is the image, so O = Y and the drop is 0.
    assert torch.allclose(o[[0, 4]], black[[0, 4]], atol=1e-6)
    assert o[1].item() == pytest.approx(y[1].item(), rel=1e-6) and out["average_drop"][1].item() == 0.0
    assert torch.isnan(out["average_drop"][2]) and torch.isfinite(out["average_drop"][[0, 1, 3, 4]]).all()
    # minmax: every constant map normalises to 0 (torchcam's and pytorch-grad-cam's rule).
    out = drop(tiny_cnn, x, h, t, preprocess=pre, normalisation="minmax")
    assert torch.allclose(out["average_drop_explained_score"][[0, 1]], black[[0, 1]], atol=1e-6)


class FakeExtractor:
    """The minimal torchcam CAM extractor: returns given maps already normalised."""

    def __init__(self, model, cams):
        self.model, self.cams = model, cams

    def __call__(self, class_idx=None, scores=None, normalized=True, **kw):
        return [self.cams]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def test_torchcam_classification_metric_in_normalised_space(tiny_cnn, images):
    metrics = pytest.importorskip("torchcam.metrics")
    h = torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([4, 3, 2, 1])
    s = (h - h.amin((1, 2), keepdim=True)) / (h.amax((1, 2), keepdim=True) - h.amin((1, 2), keepdim=True))
    m = metrics.ClassificationMetric(FakeExtractor(tiny_cnn, s), lambda z: z.softmax(-1))
    m.update(images, class_idx=t.tolist())
    peer = m.summary()
    ours = drop(tiny_cnn, images, h, t, space="normalised",
                normalisation="minmax")["average_drop"].mean().item()
    up = inc(tiny_cnn, images, h, t, space="normalised",
             normalisation="minmax")["increase_in_confidence"].mean().item()
    assert ours == pytest.approx(100 * peer["avg_drop"], abs=1e-3)  # torchcam divides by Y + 1e-7
    assert up == pytest.approx(100 * peer["conf_increase"], abs=1e-9)


def test_pytorch_grad_cam_drop_is_not_divided_by_y(tiny_cnn, images):
    gc = pytest.importorskip("pytorch_grad_cam.metrics.cam_mult_image")
    targets_mod = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    h = torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0, 1, 2, 3])
    s = ((h - h.amin((1, 2), keepdim=True)) / (h.amax((1, 2), keepdim=True) - h.amin((1, 2), keepdim=True)))
    targets = [targets_mod.ClassifierOutputSoftmaxTarget(int(c)) for c in t]
    theirs = gc.DropInConfidence()(images, s.numpy().astype(np.float32), targets, tiny_cnn)
    out = drop(tiny_cnn, images, h, t, space="normalised", normalisation="minmax")
    # Documented difference: theirs = max(0, Y - O); ours = 100 * max(0, Y - O) / Y.
    absolute = out["average_drop"] * out["average_drop_score"] / 100
    assert np.abs(np.asarray(theirs).ravel() - absolute.numpy()).max() < 1e-6
    assert (out["average_drop"] > 0).any()
