"""``faithbench roar`` (remove and retrain, Hooker et al. 2019): pixel removal against a
naive loop, ties and constant maps, the area by hand, bad input, and a tiny end-to-end
run whose retrained models are cached."""

from __future__ import annotations

import pytest
import torch

from faithbench import models
from faithbench.errors import ConfigError
from faithbench.models._shapes_train import make_pixels
from faithbench.roar import Setup, area, explain, main, remove, roar

FILL = torch.tensor([10, 20, 30], dtype=torch.uint8)


def pixels(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)


def test_remove_matches_a_naive_loop_on_non_square_maps():
    x = pixels(3, 5, 7)
    maps = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(1))  # no ties
    out = remove(x, maps, 0.4, FILL, seed=0, ids=[0, 1, 2])
    ref = x.clone()
    k = round(0.4 * 35)  # 14
    for i in range(3):
        for flat in maps[i].flatten().argsort(descending=True)[:k].tolist():
            ref[i, :, flat // 7, flat % 7] = FILL
    assert torch.equal(out, ref)


def test_ties_take_the_higher_values_first_and_constant_maps_a_seeded_subset():
    m = torch.zeros(1, 4, 6)
    m.view(-1)[[0, 9, 17]] = 2.0
    m.view(-1)[[1, 2, 3, 4, 5, 6, 7, 8, 10, 11]] = 1.0
    out = remove(pixels(1, 4, 6), m, 5 / 24, FILL, seed=0, ids=[0])
    gone = (out[0] == FILL.view(3, 1, 1)).all(0).flatten()
    assert gone.sum() == 5 and gone[[0, 9, 17]].all()  # the three 2s, then two of the 1s
    assert not gone[m.view(-1) == 0].any()
    flat = torch.full((2, 4, 6), 0.5)
    a = remove(pixels(2, 4, 6), flat, 0.5, FILL, seed=0, ids=[0, 1])
    b = remove(pixels(2, 4, 6), flat, 0.5, FILL, seed=0, ids=[0, 1])
    c = remove(pixels(2, 4, 6), flat, 0.5, FILL, seed=1, ids=[0, 1])
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a == FILL.view(1, 3, 1, 1)).all(1).flatten(1).sum(1) == 12).all()


def test_area_by_hand():
    # trapezoids 0.5 * (1 + 0.5) / 2 + 0.5 * (0.5 + 0.5) / 2 = 0.625 over a span of 1
    assert area([0.0, 0.5, 1.0], [1.0, 0.5, 0.5]) == pytest.approx(0.625)
    assert area([0.0, 0.1, 0.9], [0.8, 0.8, 0.8]) == pytest.approx(0.8)


@pytest.mark.parametrize("kwargs, match", [
    ({"fractions": [0.5, 1.0]}, r"fractions must lie in \(0, 1\)"),
    ({"methods": ["grad_cma"]}, "grad_cma.*grad_cam"),
    ({"setup": Setup(model="efficientnet_lite0")}, "efficientnet_lite0.*shapes_cnn"),
    ({"setup": Setup(steps=0)}, "steps=0"),
])
def test_bad_input_fails_before_any_work(kwargs, match, tmp_path):
    args = {"methods": ["grad_cam"], "setup": Setup(), "fractions": [0.5], **kwargs}
    with pytest.raises(ConfigError, match=match):
        roar(args["methods"], args["setup"], args["fractions"], tmp_path)
    assert not (tmp_path / "roar").exists()


def test_explain_is_batch_invariant_with_per_sample_targets():
    spec = models.load("shapes_cnn")
    x, y = make_pixels(0, 5)  # real scenes: Grad-CAM of noise images is all zeros
    whole = explain(spec, "grad_cam", x, y, 0, torch.device("cpu"), batch=5)
    one = explain(spec, "grad_cam", x, y, 0, torch.device("cpu"), batch=1)
    torch.testing.assert_close(whole, one, rtol=1e-5, atol=1e-6)
    y2 = y.clone()
    y2[0] = (y[0] + 1) % 5
    other = explain(spec, "grad_cam", x, y2, 0, torch.device("cpu"))
    assert not torch.allclose(other[0], whole[0]) and torch.equal(other[1:], whole[1:])


def test_tiny_run_retrains_per_fraction_and_caches(tmp_path, capsys):
    setup = Setup(n_train=16, n_test=8, steps=1, batch=4)
    first = roar(["grad_cam"], setup, [0.5], tmp_path, "cpu")
    assert list(zip(first.method, first.fraction)) == [
        ("grad_cam", 0.0), ("grad_cam", 0.5), ("random", 0.0), ("random", 0.5)]
    assert not first.cached.any()
    assert first.accuracy.between(0, 1).all()
    assert first.accuracy[0] == first.accuracy[2]  # fraction 0 is one shared model
    assert len(list((tmp_path / "roar").glob("*.pt"))) == 3
    again = roar(["grad_cam"], setup, [0.5], tmp_path, "cpu")
    assert again.cached.all() and again.accuracy.tolist() == first.accuracy.tolist()
    other_seed = roar(["grad_cam"], Setup(n_train=16, n_test=8, steps=1, batch=4, seed=1),
                      [0.5], tmp_path, "cpu")
    assert not other_seed.cached.any()
    assert main(["--methods", "grad_cam", "--fractions", "0.5", "--n-train", "16",
                 "--n-test", "8", "--steps", "1", "--batch", "4", "--out-dir", str(tmp_path),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "roar" / "roar.csv").is_file() and "area" in capsys.readouterr().out
    assert main(["--fractions", "0,5", "--out-dir", str(tmp_path)]) == 2
    assert "fractions must lie in (0, 1)" in capsys.readouterr().err
