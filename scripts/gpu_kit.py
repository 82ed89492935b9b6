"""The GPU checks in one script, for the first machine that has a CUDA device.

It runs, each under its own time limit (about 8 minutes in all on one GPU), and writes
one JSON file:

1. ``pytest -m gpu`` (the tests that need a CUDA device);
2. the GPU sections of ``scripts/bench_speed.py`` (1: deletion + insertion over plain
   forwards, 2: against Quantus ``PixelFlipping`` on the same GPU, 5: autocast
   agreement), ResNet-50 with random weights at 224x224;
3. throughput of Grad-CAM + ``deletion`` + ``insertion`` (the RISE protocol's 29 steps
   each, 58 forwards per image) on ResNet-50 with random weights at 224x224, in images/s,
   for fp32 and bf16, contiguous and channels-last weights, eager and ``torch.compile``
   (default mode, and ``reduce-overhead``, which replays CUDA graphs: the perturbation
   forwards have fixed shapes, so a graph captured once serves every full chunk).

The target it checks: Grad-CAM deletion + insertion over 50,000 ImageNet-sized images in
under 15 minutes on one current data-centre GPU, i.e. >= 55.6 images/s (about 3,300
forwards/s). The JSON holds every variant's images/s, forwards/s and the projected
minutes for 50,000 images, and which variant is best.

    python scripts/gpu_kit.py --json gpu.json           # on a CUDA machine
    python scripts/gpu_kit.py --dry-run                 # anywhere: says what it would
                                                        # measure, runs each variant on a
                                                        # tiny CPU model (no compile)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
TARGET_IMAGES, TARGET_MINUTES = 50_000, 15.0
STEP = 1 / 28  # RISE's 28 steps: 29 points per curve


def _run(cmd: list[str], limit: int, dry: bool) -> dict[str, Any]:
    """Run ``cmd`` with a time limit; in a dry run, only say what would run."""
    if dry:
        print(f"  would run ({limit} s limit): {' '.join(cmd)}")
        return {"cmd": cmd, "ran": False}
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=HERE.parent)
        out = {"cmd": cmd, "ran": True, "rc": p.returncode, "tail": (p.stdout + p.stderr)[-4000:]}
    except subprocess.TimeoutExpired as e:
        out = {"cmd": cmd, "ran": True, "rc": "timeout", "tail": str(e.stdout or "")[-4000:]}
    out["seconds"] = time.perf_counter() - t
    print(f"  {' '.join(cmd[-4:])}: rc {out['rc']} in {out['seconds']:.0f} s")
    return out


class _Tiny(nn.Module):
    """The dry run's stand-in for ResNet-50 (CPU, milliseconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def _model(dry: bool) -> tuple[nn.Module, str, int]:
    if dry:
        return _Tiny(), "features.2", 32
    import torchvision

    return torchvision.models.resnet50(weights=None), "layer4", 224


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(device: torch.device, n: int, chunk: int, reps: int, dry: bool,
               budget_s: float) -> dict[str, Any]:
    """images/s of Grad-CAM + deletion + insertion per variant (see the module's doc)."""
    from faithbench import methods, metrics

    torch.manual_seed(0)
    base, layer, size = _model(dry)
    base = base.eval().requires_grad_(False).to(device)
    x = torch.randn(n, 3, size, size, device=device)
    target = torch.randint(0, 10, (n,), device=device)
    cam, dele, ins = methods.get("grad_cam").fn, metrics.get("deletion").fn, metrics.get("insertion").fn
    forwards = 2 * (round(1 / STEP) + 1)  # per image
    variants = []
    for precision in ("fp32", "bf16"):
        for layout in ("contiguous", "channels_last"):
            variants.append((precision, layout, "eager"))
        for mode in ("default", "reduce-overhead"):
            variants.append((precision, "channels_last", f"compile:{mode}"))
    out: dict[str, Any] = {"images": n, "chunk": chunk, "forwards_per_image": forwards,
                           "size": size, "variants": {},
                           "model": "tiny CNN (dry run)" if dry else "resnet50 (random weights)"}
    start = time.perf_counter()
    for precision, layout, how in variants:
        name = f"{precision}/{layout}/{how}"
        if time.perf_counter() - start > budget_s:
            out["variants"][name] = {"skipped": "time budget spent"}
            continue
        if how.startswith("compile") and (dry or device.type != "cuda"):
            out["variants"][name] = {"skipped": "torch.compile is measured on CUDA only"}
            print(f"  {name:40s} would be measured on CUDA (skipped)")
            continue
        model = base.to(memory_format=torch.channels_last if layout == "channels_last"
                        else torch.contiguous_format)
        scored = torch.compile(model, mode=how.split(":")[1]) if how.startswith("compile") else model
        amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

        def go() -> dict[str, torch.Tensor]:
            with amp:
                heat = cam(model, x, target, layer=layer).float()  # as the runner's Scorer
                got = dele(scored, x, heat, target, step=STEP, chunk=chunk)
                got.update(ins(scored, x, heat, target, step=STEP, chunk=chunk))
            return got

        try:
            t0 = time.perf_counter()
            ref = go()  # warm-up (and compilation)
            _sync(device)
            warm = time.perf_counter() - t0
            times = []
            for _ in range(reps):
                _sync(device)
                t0 = time.perf_counter()
                go()
                _sync(device)
                times.append(time.perf_counter() - t0)
        except Exception as e:  # a variant that fails is reported, the others still run
            out["variants"][name] = {"error": f"{type(e).__name__}: {e}"[:500]}
            print(f"  {name:40s} failed: {type(e).__name__}: {e}"[:200])
            continue
        sec = statistics.median(times)
        ips = n / sec
        out["variants"][name] = {
            "seconds": sec, "images_per_s": ips, "forwards_per_s": ips * forwards,
            "warmup_s": warm, "minutes_for_50k": TARGET_IMAGES / ips / 60,
            "deletion_mean": float(ref["deletion"].float().mean()),
            "insertion_mean": float(ref["insertion"].float().mean())}
        print(f"  {name:40s} {ips:9.1f} images/s  {ips * forwards:9.0f} forwards/s  "
              f"{TARGET_IMAGES / ips / 60:7.1f} min for 50k  (warm-up {warm:.1f} s)")
    done = {k: v for k, v in out["variants"].items() if "images_per_s" in v}
    if done:
        best = max(done, key=lambda k: done[k]["images_per_s"])
        out["best"] = best
        out["target_met"] = done[best]["minutes_for_50k"] <= TARGET_MINUTES
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="say what would be measured; run each variant on a tiny CPU model")
    p.add_argument("--json", type=Path, default=Path("gpu_kit.json"))
    p.add_argument("--images", type=int, default=256, help="images per throughput variant")
    p.add_argument("--chunk", type=int, default=256, help="images per perturbation forward")
    p.add_argument("--reps", type=int, default=2)
    a = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not a.dry_run and not cuda:
        print("gpu_kit: no CUDA device here; use --dry-run to see what it measures", file=sys.stderr)
        return 2
    dry = a.dry_run
    device = torch.device("cpu" if dry else "cuda")
    res: dict[str, Any] = {
        "dry_run": dry, "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if cuda and not dry else "cpu",
        "target": f"Grad-CAM deletion + insertion over {TARGET_IMAGES} images at 224x224 in "
                  f"<= {TARGET_MINUTES:.0f} min on one GPU (>= {TARGET_IMAGES / TARGET_MINUTES / 60:.1f} "
                  "images/s, about 3,300 forwards/s)"}
    print(f"gpu_kit{' (dry run)' if dry else ''}: {res['target']}")
    py = sys.executable
    print("[1] tests that need a GPU")
    res["pytest_gpu"] = _run([py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"], 150, dry)
    print("[2] scripts/bench_speed.py, GPU sections (ResNet-50, random weights, 224x224)")
    speed_json = a.json.with_name(a.json.stem + "_bench_speed.json")
    res["bench_speed"] = _run([py, str(HERE / "bench_speed.py"), "--device", "cuda", "--sections",
                               "1,2,5", "--reps", "2", "--json", str(speed_json)], 180, dry)
    if not dry and speed_json.exists():
        res["bench_speed"]["results"] = json.loads(speed_json.read_text())
    print("[3] throughput: Grad-CAM + deletion + insertion per precision, layout and compile mode")
    res["throughput"] = throughput(device, 4 if dry else a.images, 8 if dry else a.chunk,
                                   1 if dry else a.reps, dry, budget_s=60 if dry else 170)
    a.json.write_text(json.dumps(res, indent=1, default=str))
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
