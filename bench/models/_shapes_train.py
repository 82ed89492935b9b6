"""The training recipe of the bundled ``shapes`` networks, shared by
``scripts/train_shapes_cnn.py``, ``scripts/train_shapes_vit.py`` and ``faithbench roar``
(which retrains from scratch).

Images travel as uint8 pixels [N,3,S,S] (small in memory) and are normalised per batch
with the shapes preprocessing."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from faithbench.datasets._synth import render, sample_scene
from faithbench.models.shapes_cnn import PREPROCESS

TRAIN_SEED = 12345  # training scenes; the benchmark's default ``shapes`` seed 0 is held out
_MEAN = torch.tensor(PREPROCESS.mean).view(1, 3, 1, 1)
_STD = torch.tensor(PREPROCESS.std).view(1, 3, 1, 1)


def make_pixels(seed: int, n: int, size: int = 64, max_distractors: int = 3,
                offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [n,3,S,S] and labels [n] of scenes offset..offset+n-1 of ``seed``."""
    xs, ys = [], []
    for start in range(offset, offset + n, 256):
        scenes = [sample_scene(seed, i, size, max_distractors)
                  for i in range(start, min(start + 256, offset + n))]
        xs.append((render(scenes).image * 255).round().to(torch.uint8))
        ys.append(torch.tensor([s.shape.kind for s in scenes]))
    return torch.cat(xs), torch.cat(ys)


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [N,3,H,W] -> the model's input (float, shapes mean/std), on pixels' device."""
    return (pixels.float() / 255 - _MEAN.to(pixels.device)) / _STD.to(pixels.device)


@torch.no_grad()
def accuracy(model: torch.nn.Module, pixels: torch.Tensor, y: torch.Tensor,
             batch: int = 256) -> float:
    """Top-1 accuracy of ``model`` on uint8 images (moved to the model's device)."""
    model.eval()
    dev = next(model.parameters()).device
    pred = torch.cat([model(normalise(c.to(dev))).argmax(1).cpu() for c in pixels.split(batch)])
    return (pred == y).float().mean().item()


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random flips and quarter turns: every class is closed under both (a rotated or
    mirrored star is a star), and the backgrounds' statistics do not change."""
    k = int(torch.randint(0, 4, (), generator=g))
    x = x.rot90(k, dims=(-2, -1))
    flip = (torch.rand(len(x), generator=g) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def fit(model: torch.nn.Module, pixels: torch.Tensor, y: torch.Tensor, steps: int = 1000,
        batch: int = 64, lr: float = 4e-3,
        on_eval: Callable[[int, float], None] | None = None, eval_every: int = 200) -> None:
    """Train ``model`` in place: AdamW (weight decay 1e-4), one-cycle lr (10% warm-up),
    label smoothing 0.05, batches drawn with replacement and augmented by a generator
    seeded 0. ``on_eval(step, loss)`` runs every ``eval_every`` steps and at the end."""
    dev = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        model.train()
        idx = torch.randint(0, len(y), (batch,), generator=g)
        x = augment(normalise(pixels[idx].to(dev)), g)
        loss = F.cross_entropy(model(x), y[idx].to(dev), label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if on_eval and (step % eval_every == 0 or step == steps):
            on_eval(step, loss.item())


def training_parser(description: str, out: str, steps: int, lr: float, eval_every: int,
                    threads: int) -> argparse.ArgumentParser:
    """The training scripts' shared options (``script_scenes``, ``fit_and_save``), with
    each script's own defaults; a script adds its own options to it."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", type=Path, default=Path(out))
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=eval_every)
    ap.add_argument("--min-acc", type=float, default=0.97)
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--data-cache", type=Path, default=None,
                    help="keep the generated training scenes here and reuse them")
    return ap


def script_scenes(n_train: int, n_test: int, data_cache: Path | None, t0: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training scripts' scenes: ``n_train`` of ``TRAIN_SEED`` (read from / kept in
    ``data_cache`` when given) and ``n_test`` held out of seed 0, as (x_train, y_train,
    x_test, y_test) uint8 pixels and labels."""
    x_test, y_test = make_pixels(0, n_test)
    if data_cache and data_cache.is_file():
        x_tr, y_tr = torch.load(data_cache, weights_only=True)
    else:
        x_tr, y_tr = make_pixels(TRAIN_SEED, n_train)
        if data_cache:
            torch.save((x_tr, y_tr), data_cache)
    if len(x_tr) != n_train:
        raise SystemExit(f"{data_cache} holds {len(x_tr)} scenes, not {n_train}")
    print(f"generated {n_train} train / {n_test} test scenes in {time.time() - t0:.0f}s",
          flush=True)
    return x_tr, y_tr, x_test, y_test


def fit_and_save(model: torch.nn.Module, scenes: tuple[torch.Tensor, ...], args: Any,
                 t0: float) -> None:
    """Train ``model`` on ``scenes`` (``script_scenes``) with the script's ``args``
    (steps, batch, lr, eval_every), printing held-out accuracy, and save its state dict
    to ``args.out`` only if the last held-out accuracy reaches ``args.min_acc``."""
    x_tr, y_tr, x_test, y_test = scenes
    acc = 0.0

    def report(step: int, loss: float) -> None:
        nonlocal acc
        acc = accuracy(model, x_test, y_test)
        print(f"step {step}: loss {loss:.3f}  held-out acc {acc:.4f}  "
              f"({time.time() - t0:.0f}s)", flush=True)

    fit(model, x_tr, y_tr, args.steps, args.batch, args.lr, report, args.eval_every)
    if acc < args.min_acc:
        raise SystemExit(f"held-out accuracy {acc:.4f} < {args.min_acc}: not saving")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB), "
          f"total {time.time() - t0:.0f}s")

