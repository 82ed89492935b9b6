"""Train the bundled ``shapes_cnn`` on the synthetic ``shapes`` scenes (CPU, seeded).

    python scripts/train_shapes_cnn.py --out bench/models/weights/shapes_cnn.pt
    python scripts/train_shapes_cnn.py --pooling gmp --out bench/models/weights/shapes_cnn_gmp.pt

Training scenes use seed 12345 (the benchmark's default ``shapes`` seed 0 is held out);
the script reports held-out accuracy on seed 0 and refuses to save below ``--min-acc``.
"""

from __future__ import annotations

import time

import torch

from faithbench.models._shapes_train import fit_and_save, script_scenes, training_parser
from faithbench.models.shapes_cnn import ShapesCNN


def main() -> None:
    ap = training_parser(__doc__.splitlines()[0], "bench/models/weights/shapes_cnn.pt",
                         steps=1000, lr=4e-3, eval_every=200, threads=2)
    ap.add_argument("--pooling", choices=("gap", "gmp"), default="gap",
                    help="global average (shapes_cnn) or max (shapes_cnn_gmp) pooling")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.time()
    scenes = script_scenes(args.n_train, args.n_test, args.data_cache, t0)

    model = ShapesCNN(pooling=args.pooling)
    fit_and_save(model, scenes, args, t0)


if __name__ == "__main__":
    main()
