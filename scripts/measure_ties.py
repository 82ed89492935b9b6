"""Ties in real maps, and how much the tie rule and the old fp16 cache move deletion /
insertion AUCs, on the bundled (model, dataset) pairs.

For each pair and method: per map, the pixels, distinct values and exact zeros of the
float32 map and of its fp16 copy (what the format-1 cache scored: fp16(map / max|map|));
then the AUCs under ``ties`` = stable, rise and random (seeds 0-2) on the float32 map,
and under the old protocol (stable ties on the fp16 copy). Prints one line per map and
the largest / mean absolute differences.

    python scripts/measure_ties.py                          # ~3 minutes on a 2-core CPU
    python scripts/measure_ties.py --n 8 --methods grad_cam saliency rise
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from hydra import compose, initialize_config_module

from faithbench import metrics
from faithbench.run import apply_method_params, prepare
from faithbench.types import stack

PAIRS = {"shapes": ["+pair=shapes"], "photos": ["+pair=photos"]}


def fp16_copy(m: torch.Tensor) -> torch.Tensor:
    """[B,H,W] as the format-1 cache stored it: fp16 of the map over its max |value|."""
    s = m.abs().flatten(1).amax(1).clamp_min(1e-38).view(-1, 1, 1)
    return (m / s).half().float() * s


def tie_stats(m: np.ndarray) -> tuple[int, int, float]:
    """(distinct values, pixels sharing their value with another pixel, zero fraction)."""
    _, counts = np.unique(m, return_counts=True)
    return len(counts), int(counts[counts > 1].sum()), float((m == 0).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4, help="images per pair")
    ap.add_argument("--methods", nargs="+", default=["grad_cam", "saliency"])
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS))
    a = ap.parse_args()
    torch.set_num_threads(2)
    diffs: dict[str, list[float]] = {}
    for pair in a.pairs:
        for method in a.methods:
            with initialize_config_module("faithbench.conf", version_base="1.3"):
                cfg = compose("config", overrides=[*PAIRS[pair], f"method={method}",
                                                   f"dataset.limit={a.n}", "device=cpu",
                                                   "metrics=[deletion,insertion]", "cache=false"])
            job = prepare(apply_method_params(cfg))
            sc = job.scorer
            b = stack([job.dataset[i] for i in job.indices], job.indices)
            with torch.no_grad():
                t = sc.spec.model(b.images).argmax(1) if cfg.target == "pred" else b.labels
            maps = sc.explain(b.images, t).detach()
            old = fp16_copy(maps)
            auc = {}
            for m in sc.metrics:
                p = {k: v for k, v in m.params.items() if k != "ties"}
                run = lambda h, ties, seed=p.get("seed"): m.fn(  # noqa: E731
                    sc.spec.model, b.images, h, t, b, **{**p, "ties": ties, "seed": seed})[m.name]
                auc[m.name] = {"stable": run(maps, "stable"), "rise": run(maps, "rise"),
                               "fp16_stable": run(old, "stable"),
                               **{f"random{s}": run(maps, "random", s) for s in range(3)}}
            for i in range(maps.shape[0]):
                d32, t32, z32 = tie_stats(maps[i].numpy())
                d16, t16, _ = tie_stats(old[i].numpy())
                n = maps[i].numel()
                line = [f"{pair}/{method} #{job.indices[i]}: {n} px, distinct {d32} (fp16 {d16}),"
                        f" tied px {t32 / n:.1%} (fp16 {t16 / n:.1%}), zeros {z32:.1%}"]
                for name, v in auc.items():
                    r = {k: float(x[i]) for k, x in v.items()}
                    rnd = [r[f"random{s}"] for s in range(3)]
                    pairs_ = {"rise-stable": r["rise"] - r["stable"],
                              "random-stable": rnd[0] - r["stable"],
                              "rise-random": r["rise"] - rnd[0],
                              "random seeds range": max(rnd) - min(rnd),
                              "fp16-fp32 (stable)": r["fp16_stable"] - r["stable"]}
                    for k, dv in pairs_.items():
                        diffs.setdefault(f"{pair}/{method}/{name} {k}", []).append(abs(dv))
                    line.append(f"  {name}: stable {r['stable']:.5f} rise {r['rise']:.5f} random "
                                + " ".join(f"{x:.5f}" for x in rnd)
                                + f" fp16 {r['fp16_stable']:.5f}")
                print("\n".join(line), flush=True)
    print("\nabsolute AUC differences: max / mean over maps")
    for k, v in diffs.items():
        print(f"{k:55s} {max(v):.2e} / {np.mean(v):.2e}")


if __name__ == "__main__":
    main()
