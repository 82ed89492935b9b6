"""Train the bundled ``shapes_vit`` (a small timm VisionTransformer) on the synthetic
``shapes`` scenes (CPU, seeded).

    python scripts/train_shapes_vit.py --out bench/models/weights/shapes_vit.pt

The convolutional trunk is the bundled ``shapes_cnn``'s (``--trunk``), kept fixed: its
weights get no gradient and its BatchNorm statistics are not updated (momentum 0), so the
shipped trunk is exactly ``shapes_cnn``'s. The rest (embedding, blocks, head) is
trained with ``shapes_cnn``'s recipe (``faithbench/models/_shapes_train.py``: training
scenes of seed 12345, flips and quarter turns, AdamW with a one-cycle schedule, label
smoothing) for 300 steps of 64 at a peak learning rate of 1e-3, on one thread (at this
size one thread is many times faster than two on a shared machine). It reports held-out
accuracy on the benchmark's ``shapes`` seed 0 and refuses to save below ``--min-acc``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from faithbench.models._shapes_train import fit_and_save, script_scenes, training_parser
from faithbench.checkpoint import load_state_dict
from faithbench.models.shapes_cnn import WEIGHTS as SHAPES_CNN_WEIGHTS
from faithbench.models.shapes_cnn import ShapesCNN
from faithbench.models.shapes_vit import build_shapes_vit, trunk_of


def main() -> None:
    ap = training_parser(__doc__.splitlines()[0], "bench/models/weights/shapes_vit.pt",
                         steps=300, lr=1e-3, eval_every=100, threads=1)
    ap.add_argument("--trunk", type=Path, default=SHAPES_CNN_WEIGHTS,
                    help="shapes_cnn state dict whose block1-block3 are the fixed trunk")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.time()
    scenes = script_scenes(args.n_train, args.n_test, args.data_cache, t0)

    cnn = ShapesCNN()
    cnn.load_state_dict(load_state_dict(args.trunk))
    trunk = trunk_of(cnn)
    for p in trunk.parameters():
        p.requires_grad_(False)
    for m in trunk.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.0  # running statistics stay shapes_cnn's
    model = build_shapes_vit(trunk)
    fit_and_save(model, scenes, args, t0)


if __name__ == "__main__":
    main()
