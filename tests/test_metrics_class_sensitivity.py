"""random_logit against Quantus 0.6 RandomLogit (two classes, where the other class is
forced), scikit-image SSIM on the same maps, and the per-sample draw of the other class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.metrics.class_sensitivity import other_classes

rl = get("random_logit").fn
H, W = 10, 14  # non-square


def tiny(num_classes=2):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * H * W, num_classes)).eval()


def saliency(model):
    """Gradient x input summed over channels: depends on the class."""
    def explain(x, target, model=model):
        x = x.detach().clone().requires_grad_(True)
        out = model(x).gather(1, target.view(-1, 1)).sum()
        (g,) = torch.autograd.grad(out, x)
        return (g * x).sum(1).detach()
    return explain


def test_matches_quantus_random_logit_with_spearman_on_two_classes():
    quantus = pytest.importorskip("quantus")
    from quantus.functions.similarity_func import correlation_spearman

    model = tiny()
    x = torch.randn(6, 3, H, W, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 1, 0, 1, 0])  # per-sample targets; the other class is forced
    explain = saliency(model)
    h = explain(x, target)
    ours = rl(model, x, h, target, explain=explain, similarity="spearman", num_classes=2)

    def qexplain(model, inputs, targets, **kw):
        return explain(torch.as_tensor(inputs), torch.as_tensor(targets).long()).numpy()[:, None]

    theirs = quantus.RandomLogit(num_classes=2, similarity_func=correlation_spearman, abs=False,
                                 normalise=False, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=h[:, None].numpy(),
        explain_func=qexplain, device="cpu")
    assert ours["random_logit_class"].tolist() == (1 - target).float().tolist()
    assert np.abs(ours["random_logit"].numpy() - np.asarray(theirs)).max() < 1e-5


def test_ssim_is_scikit_image_on_the_min_max_maps():
    from skimage.metrics import structural_similarity

    model = tiny(num_classes=4)
    x = torch.randn(5, 3, H, W, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([0, 1, 2, 3, 0])
    explain = saliency(model)
    h = explain(x, target)
    out = rl(model, x, h, target, explain=explain, seed=3)
    other = out["random_logit_class"].long()
    ho = explain(x, other)
    for i in range(5):
        a, b = h[i].double().numpy(), ho[i].double().numpy()
        a, b = (a - a.min()) / (a.max() - a.min()), (b - b.min()) / (b.max() - b.min())
        ref = structural_similarity(b, a, win_size=7, data_range=1.0)
        assert out["random_logit"][i].item() == pytest.approx(ref, abs=1e-5)


def test_other_class_is_uniform_never_the_target_and_seeded_per_sample():
    target = torch.randint(0, 5, (2000,), generator=torch.Generator().manual_seed(4))
    ids = list(range(2000))
    drawn = other_classes(target, 5, seed=7, ids=ids)
    assert not (drawn == target).any() and drawn.min() >= 0 and drawn.max() <= 4
    for t in range(5):  # each of the 4 other classes about a quarter of the time
        counts = torch.bincount(drawn[target == t], minlength=5).float()
        share = counts / counts.sum()
        assert share[t] == 0 and ((share - 0.25).abs()[torch.arange(5) != t] < 0.07).all()
    assert torch.equal(drawn[10:20], other_classes(target[10:20], 5, 7, ids[10:20]))
    assert not torch.equal(drawn, other_classes(target, 5, 8, ids))


def test_constant_maps_model_default_classes_and_errors():
    model = tiny(num_classes=3)
    x = torch.randn(3, 3, H, W, generator=torch.Generator().manual_seed(5))
    target = torch.tensor([0, 1, 2])
    explain = saliency(model)
    h = torch.stack([torch.zeros(H, W), torch.full((H, W), 0.5), explain(x, target)[2]])
    out = rl(model, x, h, target, explain=explain, similarity="spearman")  # classes from a forward
    assert out["random_logit"][:2].tolist() == [0.0, 0.0]  # constant vs a ranked map: 0
    assert out["random_logit_class"].max() <= 2
    with pytest.raises(ConfigError, match="similarity"):
        rl(model, x, h, target, explain=explain, similarity="pearson")
    with pytest.raises(ConfigError, match="num_classes"):
        rl(model, x, h, torch.zeros(3, dtype=torch.long), explain=explain, num_classes=1)
