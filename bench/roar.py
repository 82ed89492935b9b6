"""ROAR, remove and retrain (Hooker, Erhan, Kindermans & Kim, "A Benchmark for
Interpretability Methods in Deep Neural Networks", NeurIPS 2019), on the bundled
``shapes`` data: ``faithbench roar``.

For each method, the explained model's maps of the ground-truth class rank the pixels of
every training and test image; the top ``fraction`` of them (most relevant first, ties
in a seeded random order, ``metrics._order``) are replaced by the per-channel mean of the
training pixels; a fresh network of the same architecture is trained on the modified
training set with the bundled recipe (``models._shapes_train``) and its accuracy on the
modified test set is one point of the curve. A faithful method removes what the task
needs, so accuracy falls fast: a lower curve is better. ``random`` (uniform noise maps)
is always run as the baseline. Fraction 0 (retrained on the unmodified data) is shared
by all methods. ROAR scores a method on a whole data set, not per sample, so it is a
command of its own rather than a registered metric (docs/metrics.md).

Retrained models are cached under ``<out_dir>/roar/<key>.pt``, the key a digest of
(method, its parameters, fraction, seed, data, training recipe, explained weights).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from faithbench.config import digest
from faithbench.errors import ConfigError, check_choice

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
# Explained model -> pooling of the network retrained (both are ShapesCNN).
POOLING = {"shapes_cnn": "gap", "shapes_cnn_gmp": "gmp"}
TEST_IDS = 10**7  # test scene i draws its tie order as sample TEST_IDS + i


@dataclass(frozen=True)
class Setup:
    """What a ROAR run holds fixed: the explained model, the data and the recipe."""

    model: str = "shapes_cnn"
    n_train: int = 10000  # scenes of seed 12345, as the bundled model
    n_test: int = 1000  # scenes of seed 0 (held out)
    steps: int = 1000
    batch: int = 64
    lr: float = 4e-3
    seed: int = 0  # the methods' seed, the tie order and the fresh network's initialisation


def check(setup: Setup, methods: Sequence[str], fractions: Sequence[float]) -> None:
    """ConfigError naming any bad value, before anything is computed."""
    from faithbench import methods as registry

    check_choice("roar model", setup.model, POOLING)
    for m in methods:
        registry.get(m)
    bad = [f for f in fractions if not 0 < f < 1]
    if bad or not fractions:
        raise ConfigError(f"roar fractions must lie in (0, 1), got {fractions}")
    for k in ("n_train", "n_test", "steps", "batch"):
        if getattr(setup, k) < 1:
            raise ConfigError(f"roar {k}={getattr(setup, k)} must be >= 1")


def remove(pixels: torch.Tensor, maps: torch.Tensor, fraction: float, fill: torch.Tensor,
           seed: int, ids: list[int]) -> torch.Tensor:
    """``pixels`` uint8 [N,3,H,W] with the ``round(fraction*H*W)`` most relevant pixels of
    each ``maps`` [N,H,W] (ties in the seeded random order) set to ``fill`` uint8 [3].

    Example:
        >>> x = torch.full((1, 3, 2, 2), 200, dtype=torch.uint8)
        >>> m = torch.tensor([[[0.9, 0.1], [0.5, 0.2]]])
        >>> remove(x, m, 0.5, torch.tensor([1, 2, 3], dtype=torch.uint8), 0, [0])[0, 2]
        tensor([[  3, 200],
                [  3, 200]], dtype=torch.uint8)
    """
    from faithbench.metrics._order import order_of

    n, _, h, w = pixels.shape
    k = int(round(fraction * h * w))
    top = order_of(maps.float(), "morf", "random", seed, ids)[:, :k]
    gone = torch.zeros(n, h * w, dtype=torch.bool).scatter_(1, top.cpu(), True).view(n, 1, h, w)
    return torch.where(gone, fill.view(1, 3, 1, 1), pixels)


def explain(spec: Any, method: str, pixels: torch.Tensor, y: torch.Tensor, seed: int,
            device: torch.device, batch: int = 256) -> torch.Tensor:
    """The method's maps [N,H,W] (CPU) of ``spec``'s model for classes ``y``, with the
    parameters and context the runner gives it (faithbench.api)."""
    from faithbench.api import _method
    from faithbench.models._shapes_train import normalise
    from faithbench.scoring import runner_context

    fn, params = _method(method, method, runner_context(spec, seed), None, spec.name)
    model = spec.model.to(device)
    return torch.cat([fn(model, normalise(p.to(device)), t.to(device), **params).detach().cpu()
                      for p, t in zip(pixels.split(batch), y.split(batch))])


def retrain(setup: Setup, pixels: torch.Tensor, y: torch.Tensor,
            device: torch.device) -> torch.nn.Module:
    """A fresh ShapesCNN (initialised from ``setup.seed``) trained on ``pixels``."""
    from faithbench.models._shapes_train import fit
    from faithbench.models.shapes_cnn import ShapesCNN

    torch.manual_seed(setup.seed)
    model = ShapesCNN(pooling=POOLING[setup.model]).to(device)
    fit(model, pixels, y, setup.steps, setup.batch, setup.lr)
    return model


def area(fractions: list[float], accuracy: list[float]) -> float:
    """Mean accuracy over the removed fraction (trapezoids over [0, max], divided by the
    span); lower is better.

    Example:
        >>> area([0.0, 0.5, 1.0], [1.0, 0.5, 0.5])
        0.625
    """
    acc, frac = torch.tensor(accuracy, dtype=torch.float64), torch.tensor(fractions, dtype=torch.float64)
    return float(torch.trapezoid(acc, frac) / (frac[-1] - frac[0]))


def roar(methods: Sequence[str], setup: Setup = Setup(), fractions: Sequence[float] = FRACTIONS,
         out_dir: str | Path = "faithbench_out", device: str = "auto") -> pd.DataFrame:
    """The ROAR curves: one row per (method, fraction) with ``accuracy`` (retrained test
    accuracy), ``area`` (the method's, repeated) and ``cached``; ``random`` is added.

    Args:
        methods: registry names, explained with their default parameters.
        setup: the explained model, data and training recipe.
        fractions: shares of pixels removed, each in (0, 1); 0 is always added.
        out_dir: the cache goes to ``<out_dir>/roar``.
        device: ``auto`` | ``cpu`` | ``cuda[:N]`` for the maps and the retraining.
    """
    from faithbench import models
    from faithbench.jobs import pick_device
    from faithbench.models._shapes_train import TRAIN_SEED, accuracy, make_pixels

    methods = list(dict.fromkeys([*methods, "random"]))
    fractions = sorted(set(fractions))
    check(setup, methods, fractions)
    dev = pick_device(device)
    spec = models.load(setup.model)
    x_tr, y_tr = make_pixels(TRAIN_SEED, setup.n_train)
    x_te, y_te = make_pixels(0, setup.n_test)
    fill = x_tr.float().mean((0, 2, 3)).round().to(torch.uint8)  # Hooker et al.: channel mean
    cache = Path(out_dir) / "roar"
    cache.mkdir(parents=True, exist_ok=True)

    def point(method: str | None, fraction: float, data: Any) -> tuple[float, bool]:
        key = {"method": method, "fraction": fraction, "weights": spec.weights_id,
               "setup": asdict(setup), "data": "shapes:train=12345,test=0"}
        path = cache / f"{digest(key)[:16]}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)["accuracy"], True
        tr, te = data()
        net = retrain(setup, tr, y_tr, dev)
        acc = accuracy(net, te, y_te)
        torch.save({"key": digest(key), "accuracy": acc, "state_dict": net.state_dict()}, path)
        return acc, False

    base, base_cached = point(None, 0.0, lambda: (x_tr, x_te))
    rows = []
    for method in methods:
        maps: list[torch.Tensor] = []

        def data(f: float) -> tuple[torch.Tensor, torch.Tensor]:
            if not maps:  # only when a point is not cached
                maps.extend([explain(spec, method, x_tr, y_tr, setup.seed, dev),
                             explain(spec, method, x_te, y_te, setup.seed, dev)])
            return (remove(x_tr, maps[0], f, fill, setup.seed, list(range(setup.n_train))),
                    remove(x_te, maps[1], f, fill, setup.seed,
                           [TEST_IDS + i for i in range(setup.n_test)]))

        curve = [(0.0, base, base_cached)]
        curve += [(f, *point(method, f, lambda f=f: data(f))) for f in fractions]
        a = area([c[0] for c in curve], [c[1] for c in curve])
        rows += [{"method": method, "fraction": f, "accuracy": acc, "area": a, "cached": hit}
                 for f, acc, hit in curve]
    return pd.DataFrame(rows)


def main(argv: list[str]) -> int:
    """``faithbench roar``: print the curves and write ``<out_dir>/roar/roar.csv``; 0 on
    success, 2 on bad input (message on stderr)."""
    d = Setup()
    ap = argparse.ArgumentParser(prog="faithbench roar", description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="grad_cam", help="comma-separated; random is added")
    ap.add_argument("--fractions", default=",".join(map(str, FRACTIONS)))
    ap.add_argument("--model", default=d.model, help=f"one of {', '.join(POOLING)}")
    for k in ("n_train", "n_test", "steps", "batch", "seed"):
        ap.add_argument(f"--{k.replace('_', '-')}", type=int, default=getattr(d, k))
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--out-dir", default="faithbench_out")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    setup = Setup(a.model, a.n_train, a.n_test, a.steps, a.batch, a.lr, a.seed)
    try:
        try:
            fractions = [float(f) for f in a.fractions.split(",")]
        except ValueError:
            raise ConfigError(f"roar fractions must be numbers, got {a.fractions!r}") from None
        df = roar(a.methods.split(","), setup, fractions, a.out_dir, a.device)
    except ConfigError as e:
        print(f"faithbench: error: {e}", file=sys.stderr)
        return 2
    table = df.pivot(index="method", columns="fraction", values="accuracy")
    table["area"] = df.groupby("method")["area"].first()
    print(table.sort_values("area").round(4).to_string())
    df.to_csv(Path(a.out_dir) / "roar" / "roar.csv", index=False)
    return 0
