"""Train the known-truth models ``cue_shape_cnn`` and ``cue_marker_cnn`` (CPU, seeded).

    python scripts/train_cue_models.py            # both rules -> bench/models/weights/

Both models see the same images: the first ``--n-train`` scenes of seed 777 of the
``cues`` dataset (default contrast filter of its marker), each drawn
three ways (as is, without its shape, without its marker). Only the labels differ:
the shape model labels a scene by its shape and the marker model by its marker's
colour; a scene without the model's own cue is labelled ``none``, a scene without the
other cue keeps its label. So each model is taught that its cue decides and the other
cue does not matter. Both start from the conv blocks of the bundled ``shapes_cnn``
(trained on ``shapes`` scenes without markers; final layer fresh), which cuts training
to a few hundred steps (``--init ''`` trains from scratch). The held-out check (seed 0,
the benchmark's default) measures both by intervention, as the runner does, and the
script refuses to save a model below ``--min-acc`` or outside the verification
thresholds of ``conf/dataset/cues.yaml``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from faithbench.datasets._synth import render, sample_scene
from faithbench.datasets.cues import CLASSES, RULES, cue_values, scene_indices
from faithbench.models.cue_cnn import build
from faithbench.models.shapes_cnn import PREPROCESS

TRAIN_SEED = 777
VIEWS = ("clean", "shape", "marker")  # which cue is removed: none, the shape, the marker


def make_set(seed: int, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """uint8 images [3n,3,64,64] (the VIEWS of each scene, view-major) and, per rule,
    labels [3n] (``none`` where the rule's cue was removed)."""
    xs: list[list[torch.Tensor]] = [[] for _ in VIEWS]
    vals: dict[str, list[int]] = {r: [] for r in RULES}
    keep = scene_indices(seed, n)  # the cues dataset's scenes (markers that can be seen)
    for start in range(0, n, 256):
        scenes = [sample_scene(seed, i, 64, 3, marker=True) for i in keep[start:start + 256]]
        for v, view in enumerate(VIEWS):
            img = render(scenes, drop=() if view == "clean" else {view}).image
            xs[v].append((img * 255).round().to(torch.uint8))
        for r in RULES:
            vals[r] += [cue_values(s)[r] for s in scenes]
    labels = {}
    for r in RULES:
        none = len(CLASSES[r]) - 1
        y = torch.tensor(vals[r])
        labels[r] = torch.cat([y if view != r else torch.full_like(y, none) for view in VIEWS])
    return torch.cat([torch.cat(v) for v in xs]), labels


def normalise(x: torch.Tensor) -> torch.Tensor:
    return PREPROCESS.normalize(x.float() / 255)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random flips and quarter turns: shapes and marker colours are closed under both."""
    x = x.rot90(int(torch.randint(0, 4, (), generator=g)), dims=(-2, -1))
    flip = torch.rand(len(x), generator=g) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@torch.no_grad()
def check(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, rule: str) -> dict[str, float]:
    """Held-out accuracy on the clean views and the two intervention flip rates."""
    model.eval()
    pred = torch.cat([model(normalise(c)).argmax(1) for c in x.split(500)])
    clean, no_shape, no_marker = pred.chunk(3)
    used, other = (no_shape, no_marker) if rule == "shape" else (no_marker, no_shape)
    return {"acc": (clean == y.chunk(3)[0]).float().mean().item(),
            "used_flip": (used != clean).float().mean().item(),
            "other_flip": (other != clean).float().mean().item()}


def train(rule: str, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
          y_test: torch.Tensor, args: argparse.Namespace) -> tuple[torch.nn.Module, dict[str, float]]:
    torch.manual_seed(0)
    model = build(rule)
    if args.init:  # the conv blocks of a trained shapes_cnn; a fresh final layer
        state = torch.load(args.init, weights_only=True)
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")},
                              strict=False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    t0, res = time.time(), {}
    for step in range(1, args.steps + 1):
        model.train()
        idx = torch.randint(0, len(x), (args.batch,), generator=g)
        loss = F.cross_entropy(model(augment(normalise(x[idx]), g)), y[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % args.eval_every == 0 or step == args.steps:
            res = check(model, x_test, y_test, rule)
            print(f"{rule} step {step}: loss {loss.item():.3f}  held-out acc {res['acc']:.4f}  "
                  f"used-cue flip {res['used_flip']:.4f}  other-cue flip {res['other_flip']:.4f}  "
                  f"({time.time() - t0:.0f}s)", flush=True)
    return model, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/models/weights"))
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    ap.add_argument("--init", type=Path, default=Path("bench/models/weights/shapes_cnn.pt"),
                    help="start from this shapes_cnn state dict (conv blocks); '' = from scratch")
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--min-acc", type=float, default=0.97)
    ap.add_argument("--min-used-flip", type=float, default=0.9)
    ap.add_argument("--max-other-flip", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-cache", type=Path, default=None,
                    help="keep the rendered scenes here and reuse them")
    args = ap.parse_args()
    args.init = args.init if args.init and str(args.init) not in ("", ".") else None

    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.data_cache and args.data_cache.is_file():
        x_test, y_test, x, y = torch.load(args.data_cache, weights_only=True)
    else:
        x_test, y_test = make_set(0, args.n_test)
        x, y = make_set(TRAIN_SEED, args.n_train)
        if args.data_cache:
            torch.save((x_test, y_test, x, y), args.data_cache)
    if len(x) != 3 * args.n_train or len(x_test) != 3 * args.n_test:
        raise SystemExit(f"{args.data_cache} holds other set sizes than --n-train/--n-test")
    print(f"rendered 3 x {args.n_train} train / 3 x {args.n_test} test scenes in "
          f"{time.time() - t0:.0f}s", flush=True)
    for rule in args.rules:
        model, res = train(rule, x, y[rule], x_test, y_test[rule], args)
        if (res["acc"] < args.min_acc or res["used_flip"] < args.min_used_flip
                or res["other_flip"] > args.max_other_flip):
            raise SystemExit(f"{rule}: held-out {res} misses acc >= {args.min_acc}, used-cue "
                             f"flip >= {args.min_used_flip}, other-cue flip <= "
                             f"{args.max_other_flip}: not saving")
        path = args.out / f"cue_{rule}_cnn.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, path)
        print(f"saved {path} ({path.stat().st_size / 1024:.0f} KiB), total {time.time() - t0:.0f}s",
              flush=True)


if __name__ == "__main__":
    main()
