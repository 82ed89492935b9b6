"""The GPU kit (scripts/gpu_kit.py) runs on CPU with --dry-run, so it cannot rot: it
says what it would measure and runs every eager variant on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from faithbench import metrics

KIT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_kit.py"


def test_gpu_kit_dry_run_says_what_it_measures_and_runs_each_variant(tmp_path):
    out = tmp_path / "kit.json"
    p = subprocess.run([sys.executable, str(KIT), "--dry-run", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "would run" in p.stdout and "-m gpu" in p.stdout and "bench_speed.py" in p.stdout
    assert "50000 images" in p.stdout
    res = json.loads(out.read_text())
    assert res["dry_run"] is True and not res["pytest_gpu"]["ran"]
    variants = res["throughput"]["variants"]
    assert len(variants) == 8  # fp32/bf16 x (contiguous, channels-last, 2 compile modes)
    eager = {k: v for k, v in variants.items() if k.endswith("eager")}
    assert len(eager) == 4 and all(v.get("images_per_s", 0) > 0 for v in eager.values()), eager
    assert all("CUDA" in v["skipped"] for k, v in variants.items() if "compile" in k)
    assert res["throughput"]["best"] in eager and "target_met" in res["throughput"]


def test_insertion_runs_under_bf16_autocast(tiny_cnn, images):
    """The blurred start image of insertion comes out of autocast in bf16: it is cast
    back to the images' dtype (the kit's bf16 variant found this)."""
    heat = images.mean(1)
    target = torch.zeros(len(images), dtype=torch.long)
    ins = metrics.get("insertion").fn
    ref = ins(tiny_cnn, images, heat, target, step=0.25)["insertion"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ins(tiny_cnn, images, heat, target, step=0.25)["insertion"]
    assert got.shape == ref.shape and torch.isfinite(got).all()
    assert torch.allclose(got.float(), ref, atol=0.05)
