"""Train the bundled ``shapes_cnn`` on the synthetic ``shapes`` scenes (CPU, seeded).

    python scripts/train_shapes_cnn.py --out bench/models/weights/shapes_cnn.pt
    python scripts/train_shapes_cnn.py --pooling gmp --out bench/models/weights/shapes_cnn_gmp.pt

Training scenes use seed 12345 (the benchmark's default ``shapes`` seed 0 is held out);
the script reports held-out accuracy on seed 0 and refuses to save below ``--min-acc``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from faithbench.models._shapes_train import fit_and_save, script_scenes
from faithbench.models.shapes_cnn import ShapesCNN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/models/weights/shapes_cnn.pt"))
    ap.add_argument("--pooling", choices=("gap", "gmp"), default="gap",
                    help="global average (shapes_cnn) or max (shapes_cnn_gmp) pooling")
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
    scenes = script_scenes(args.n_train, args.n_test, args.data_cache, t0)

    model = ShapesCNN(pooling=args.pooling)
    fit_and_save(model, scenes, args, t0)


if __name__ == "__main__":
    main()
