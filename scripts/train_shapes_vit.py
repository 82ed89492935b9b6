"""Train the bundled ``shapes_vit`` (a small timm VisionTransformer) on the synthetic
``shapes`` scenes (CPU, seeded).

    python scripts/train_shapes_vit.py --out bench/models/weights/shapes_vit.pt

The recipe is ``shapes_cnn``'s (``faithbench/models/_shapes_train.py``: training scenes
of seed 12345, flips and quarter turns, AdamW with a one-cycle schedule, label smoothing)
with batches of 32 (1,500 steps) and a peak learning rate of 3e-3, on one thread. It reports held-out accuracy on the benchmark's ``shapes`` seed 0 and refuses to
save below ``--min-acc``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from faithbench.models._shapes_train import TRAIN_SEED, accuracy, fit, make_pixels
from faithbench.models.shapes_vit import build_shapes_vit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/models/weights/shapes_vit.pt"))
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--min-acc", type=float, default=0.97)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-cache", type=Path, default=None,
                    help="keep the generated training scenes here and reuse them")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.time()
    x_test, y_test = make_pixels(0, args.n_test)
    if args.data_cache and args.data_cache.is_file():
        x_tr, y_tr = torch.load(args.data_cache, weights_only=True)
    else:
        x_tr, y_tr = make_pixels(TRAIN_SEED, args.n_train)
        if args.data_cache:
            torch.save((x_tr, y_tr), args.data_cache)
    if len(x_tr) != args.n_train:
        raise SystemExit(f"{args.data_cache} holds {len(x_tr)} scenes, not {args.n_train}")
    print(f"generated {args.n_train} train / {args.n_test} test scenes in {time.time() - t0:.0f}s",
          flush=True)

    model = build_shapes_vit()
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


if __name__ == "__main__":
    main()
