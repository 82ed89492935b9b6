"""Train the bundled ``shapes_cnn`` on the synthetic ``shapes`` scenes (CPU, seeded).

    python scripts/train_shapes_cnn.py --out bench/models/weights/shapes_cnn.pt

Training scenes use seed 12345 (the benchmark's default ``shapes`` seed 0 is held out);
the script reports held-out accuracy on seed 0 and refuses to save below ``--min-acc``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from faithbench.datasets._synth import render, sample_scene
from faithbench.models.shapes_cnn import PREPROCESS, ShapesCNN

TRAIN_SEED = 12345


def make_set(seed: int, n: int, size: int = 64, max_distractors: int = 3,
             offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images [n,3,S,S] and labels [n] of scenes offset..offset+n-1."""
    xs, ys = [], []
    for start in range(offset, offset + n, 256):
        scenes = [sample_scene(seed, i, size, max_distractors)
                  for i in range(start, min(start + 256, offset + n))]
        xs.append(PREPROCESS.normalize(render(scenes).image))
        ys.append(torch.tensor([s.shape.kind for s in scenes]))
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(c).argmax(1) for c in x.split(256)])
    return (pred == y).float().mean().item()


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random flips and quarter turns: every class is closed under both (a rotated or
    mirrored star is a star), and the backgrounds' statistics do not change."""
    k = int(torch.randint(0, 4, (), generator=g))
    x = x.rot90(k, dims=(-2, -1))
    flip = torch.rand(len(x), generator=g) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/models/weights/shapes_cnn.pt"))
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--min-acc", type=float, default=0.97)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-cache", type=Path, default=None,
                    help="keep the generated training scenes here and reuse them")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.time()
    x_test, y_test = make_set(0, args.n_test)
    # Training scenes are stored as uint8 (dequantised per batch) to keep them small.
    mean = torch.tensor(PREPROCESS.mean).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS.std).view(1, 3, 1, 1)
    if args.data_cache and args.data_cache.is_file():
        x_tr, y_tr = torch.load(args.data_cache, weights_only=True)
    else:
        x_tr, y_tr = make_set(TRAIN_SEED, args.n_train)
        x_tr = ((x_tr * std + mean) * 255).round().to(torch.uint8)
        if args.data_cache:
            torch.save((x_tr, y_tr), args.data_cache)
    if len(x_tr) != args.n_train:
        raise SystemExit(f"{args.data_cache} holds {len(x_tr)} scenes, not {args.n_train}")
    print(f"generated {args.n_train} train / {args.n_test} test scenes in {time.time() - t0:.0f}s",
          flush=True)

    model = ShapesCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps,
                                                pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    acc = 0.0
    for step in range(1, args.steps + 1):
        model.train()
        idx = torch.randint(0, args.n_train, (args.batch,), generator=g)
        x = augment((x_tr[idx].float() / 255 - mean) / std, g)
        loss = F.cross_entropy(model(x), y_tr[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % args.eval_every == 0 or step == args.steps:
            acc = accuracy(model, x_test, y_test)
            print(f"step {step}: loss {loss.item():.3f}  held-out acc {acc:.4f}  "
                  f"({time.time() - t0:.0f}s)", flush=True)
    if acc < args.min_acc:
        raise SystemExit(f"held-out accuracy {acc:.4f} < {args.min_acc}: not saving")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB), "
          f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
