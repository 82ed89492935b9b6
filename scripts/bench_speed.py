"""Speed benchmark: faithbench against the physical floor and against peer libraries.

Everything runs in one process, on the same model and the same images, and every
figure is the median of ``--reps`` timed repetitions after one warm-up. It prints:

1. overhead: ``deletion`` + ``insertion`` time over the time of the same number of plain
   batched forward passes of the same images (the floor);
2. ``deletion`` against Quantus ``PixelFlipping`` (same steps, same baseline, same maps);
3. methods against pytorch-grad-cam, torchcam and Captum at batch sizes 1 and 32
   (RISE, which no peer implements, against its own forward passes);
4. peak memory of a full run over 100 and 1,000 images (a subprocess each);
5. autocast: per-sample AUC agreement (Spearman) of fp32 and bf16/fp16, and its speed-up;
6. every metric that Quantus 0.6 also has, against Quantus on the same model, images and
   maps (shapes_cnn on 4 shapes scenes), with the images each side sends through the model
   (``--sections 6``; not in the default run).

CPU defaults: efficientnet_lite0 on the bundled photos for 1, 2 and 5 (the real
224x224 model); shapes_cnn on shapes for 3 and 4 (64x64, so Score-CAM at batch 32
stays within minutes on two cores). On CUDA every section uses a torchvision ResNet-50
with random weights at 224x224 (no download) unless ``--model`` says otherwise.

    python scripts/bench_speed.py                      # about 8 minutes on a 2-core CPU
    python scripts/bench_speed.py --device cuda --json perf.json
Peers are optional: ``pip install "faithbench[compare]"``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench import datasets, methods, metrics, models
from faithbench.cli import compose
from faithbench.jobs import cpu_chunk_cap
from faithbench.types import stack

warnings.filterwarnings("ignore")


@dataclass
class Setup:
    name: str
    model: nn.Module
    x: Tensor
    target: Tensor
    layer: str


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


SLOW_S = 10.0
FAST_S, FAST_REPS = 0.1, 15


def compare(calls: dict[str, Callable[[], object]], reps: int,
            device: torch.device) -> dict[str, float]:
    """Median seconds per call of each entry: one warm-up each, then ``reps`` rounds
    that call every entry in turn, so a change in the machine's load hits all of them.
    An entry whose warm-up took over ``SLOW_S`` is timed in the first round only (its
    noise is small next to its size; this keeps the benchmark within minutes); when every
    entry is faster than ``FAST_S``, there are at least ``FAST_REPS`` rounds (a median
    of milliseconds needs more samples). Peers' progress bars and warnings are silenced."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    warm: dict[str, float] = {}
    with contextlib.redirect_stderr(io.StringIO()):
        for k, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            warm[k] = time.perf_counter() - t0
        slow = {k for k, v in warm.items() if v > SLOW_S}
        rounds = max(reps, FAST_REPS) if max(warm.values()) < FAST_S else reps
        for r in range(rounds):
            for k, fn in calls.items():
                if r and k in slow:
                    continue
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def setup(name: str, dataset: str, n: int, device: torch.device) -> Setup:
    """A model in the runner's state (eval, frozen, channels-last) and ``n`` images
    (repeated when the dataset is smaller), targets = the model's top-1."""
    if name == "resnet50_random":
        import torchvision

        from faithbench.preprocess import Preprocess
        model, layer = torchvision.models.resnet50(weights=None), "layer4"
        pre = Preprocess(size=224, resize="stretch", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    else:
        spec = models.load(name)
        model, layer, pre = spec.model, spec.cam_layer or "", spec.preprocess
    model = model.eval().to(device).to(memory_format=torch.channels_last)
    model.requires_grad_(False)
    ds = datasets.build(dataset, pre)
    b = stack([ds[i % len(ds)] for i in range(n)], list(range(n)))
    x = b.images.to(device)
    with torch.no_grad():
        target = model(x).argmax(1)
    return Setup(name, model, x, target, layer)


def floor_forwards(model: nn.Module, x: Tensor, copies: int, chunk: int) -> Callable[[], None]:
    """Plain batched forwards of ``copies`` x B images, ``chunk`` per forward."""
    big = x.repeat(min(copies, max(1, chunk // x.shape[0] + 1)), 1, 1, 1)
    total = copies * x.shape[0]

    def go() -> None:
        with torch.inference_mode():
            for i in range(0, total, chunk):
                model(big[: min(chunk, total - i)])
    return go


def section_overhead(s: Setup, reps: int, device: torch.device, chunk: int) -> dict[str, float]:
    heat = methods.get("grad_cam").fn(s.model, s.x, s.target, layer=s.layer)
    dele, ins = metrics.get("deletion").fn, metrics.get("insertion").fn
    t = dele(s.model, s.x, heat, s.target)["deletion_curve"].shape[1]
    got = compare({"ours": lambda: (dele(s.model, s.x, heat, s.target, chunk=chunk),
                                    ins(s.model, s.x, heat, s.target, chunk=chunk)),
                   "floor": floor_forwards(s.model, s.x, 2 * t, chunk)}, reps, device)
    ours, floor = got["ours"], got["floor"]
    print(f"\n[1] overhead vs forward passes ({s.name}, {s.x.shape[0]} images "
          f"{tuple(s.x.shape[-2:])}, {2 * t} forwards per image, chunk {chunk})")
    print(f"    deletion+insertion {ours:8.3f} s   plain forwards {floor:8.3f} s   "
          f"ratio {ours / floor:5.3f}   (target <= 1.15)")
    return {"overhead_ratio": ours / floor, "delins_s": ours, "floor_s": floor}


def section_quantus(s: Setup, reps: int, device: torch.device, n: int,
                    chunk: int) -> dict[str, float]:
    s = Setup(s.name, s.model, s.x[:n], s.target[:n], s.layer)
    print(f"\n[2] deletion vs Quantus PixelFlipping ({s.name}, {s.x.shape[0]} images, "
          f"same steps, baseline 0, softmax; ours chunk {chunk})")
    try:
        import quantus
    except ImportError:
        print("    quantus not installed (pip install 'faithbench[compare]')")
        return {}
    heat = methods.get("grad_cam").fn(s.model, s.x, s.target, layer=s.layer)
    # Quantus flips single channel values and needs H*W % features_in_step == 0, so
    # RISE's 28 steps of 3x1792 values do not fit at 224x224. Both sides take the same
    # number of steps instead (84 at 224x224: 1792 values = 597.3 pixels per step).
    c, hw = s.x.shape[1], s.x.shape[-2] * s.x.shape[-1]
    per_step = -(-hw // 28)
    while hw % per_step:
        per_step -= 1
    n_steps = c * hw // per_step
    pf = quantus.PixelFlipping(features_in_step=per_step, perturb_baseline=0.0,
                               disable_warnings=True, display_progressbar=False,
                               abs=False, normalise=False, return_auc_per_sample=False)
    xa, ya = s.x.contiguous().cpu().numpy(), s.target.cpu().numpy()
    aa = heat[:, None].cpu().numpy()
    peer_curves: list = []

    def peer() -> None:
        peer_curves[:] = pf(model=s.model, x_batch=xa, y_batch=ya, a_batch=aa,
                            device=str(device), softmax=True, batch_size=len(xa))

    dele = metrics.get("deletion").fn
    out: dict[str, Tensor] = {}

    def ours() -> None:
        out.update(dele(s.model, s.x, heat, s.target, step=1 / n_steps, substitute="zero",
                        activation="softmax", chunk=chunk))

    got = compare({"quantus": peer, "ours": ours}, reps, device)
    tq, to = got["quantus"], got["ours"]
    qc = torch.tensor(peer_curves, dtype=torch.float32)
    oc = out["deletion_curve"][:, 1:].cpu()  # Quantus skips the unperturbed point
    print(f"    {n_steps} steps: ours {to:8.3f} s   quantus {tq:8.3f} s   speed-up {tq / to:5.2f}x   "
          f"(target >= 5x CPU, >= 20x GPU); mean |curve diff| {float((qc - oc).abs().mean()):.1e}")
    return {"quantus_speedup": tq / to, "quantus_s": tq, "deletion_s": to}


def peers_for(name: str, s: Setup, x: Tensor, t: Tensor) -> dict[str, Callable[[], object]]:
    """Peer calls computing the same map as our method ``name``."""
    out: dict[str, Callable[[], object]] = {}
    layer = s.model.get_submodule(s.layer)
    h, w = x.shape[-2:]
    win, stride = max(4, h // 4), max(2, h // 8)
    try:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        tg = [ClassifierOutputTarget(int(c)) for c in t]
        kind = {"grad_cam": pgc.GradCAM, "score_cam": pgc.ScoreCAM}.get(name)
        if kind is not None:
            cam = kind(model=s.model, target_layers=[layer])
            if name == "score_cam":
                cam.batch_size = 64
            out["pytorch-grad-cam"] = lambda: cam(input_tensor=x, targets=tg)
    except ImportError:
        pass
    try:
        import torchcam.methods as tcm
        kind = {"grad_cam": tcm.GradCAM, "score_cam": tcm.ScoreCAM}.get(name)
        if kind is not None:
            def tc() -> object:  # torchcam stops at layer resolution: upsample like ours
                kw = {"batch_size": 64} if name == "score_cam" else {}
                with kind(s.model, target_layer=s.layer, **kw) as ext:
                    with torch.set_grad_enabled(name == "grad_cam"):
                        cams = ext(t.tolist(), s.model(x))[0]
                return F.interpolate(cams[:, None], size=(h, w), mode="bilinear", align_corners=False)
            out["torchcam"] = tc
    except ImportError:
        pass
    try:
        import captum.attr as ca
        if name == "integrated_gradients":
            ig = ca.IntegratedGradients(s.model)
            out["captum"] = lambda: ig.attribute(x, target=t, n_steps=50, method="gausslegendre",
                                                 internal_batch_size=64)
        if name == "occlusion":
            oc = ca.Occlusion(s.model)
            out["captum"] = lambda: oc.attribute(x, sliding_window_shapes=(3, win, win),
                                                 strides=(3, stride, stride), target=t,
                                                 baselines=0.0, perturbations_per_eval=64)
    except ImportError:
        pass
    return out


def section_methods(s: Setup, reps: int, device: torch.device, n_masks: int,
                    batches: tuple[int, ...] = (1, 32), chunk: int = 64) -> list[dict]:
    print(f"\n[3] methods vs peers ({s.name}, {tuple(s.x.shape[-2:])}; ours chunk {chunk}, "
          f"peers 64; peer time / ours, > 1 means faithbench is faster)")
    h = s.x.shape[-2]
    kw = {"grad_cam": {"layer": s.layer}, "score_cam": {"layer": s.layer, "chunk": chunk},
          "integrated_gradients": {"n_steps": 50, "internal_batch_size": chunk},
          "occlusion": {"window": max(4, h // 4), "stride": max(2, h // 8), "chunk": chunk},
          "rise": {"n_masks": n_masks, "chunk": chunk}}
    rows = []
    for bs in batches:
        x, t = s.x[:bs], s.target[:bs]
        for name, params in kw.items():
            fn = methods.get(name).fn
            calls = {"ours": lambda fn=fn, params=params: fn(s.model, x, t, **params)}
            calls.update(peers_for(name, s, x, t))
            if name == "rise":  # no peer library has RISE: compare with its forwards
                calls["forward floor"] = floor_forwards(s.model, x, n_masks, chunk)
            cells = []
            # pytorch-grad-cam and torchcam backpropagate into the weights; ours never does
            s.model.requires_grad_(name == "grad_cam")
            try:
                got = compare(calls, reps, device)
            except Exception as e:  # a peer failing must not hide the others
                got = {"ours": compare({"ours": calls["ours"]}, reps, device)["ours"]}
                cells.append(f"a peer failed ({type(e).__name__}: {str(e)[:80]})")
            finally:
                s.model.requires_grad_(False)
            ours = got.pop("ours")
            for peer, tp in got.items():
                cells.append(f"{peer} {tp / ours:5.2f}x")
                rows.append({"batch": bs, "method": name, "peer": peer, "ours_s": ours,
                             "peer_s": tp, "ratio": tp / ours})
            print(f"    B={bs:<3d}{name:22s} ours {ours:8.4f} s   " + "   ".join(cells), flush=True)
    return rows


MEMORY_SNIPPET = """
import json, resource, sys, torch
from faithbench.cli import compose
from faithbench.run import run
cfg = compose(sys.argv[2:])
run(cfg)
def host_peak():
    # VmHWM belongs to this process image; ru_maxrss survives exec and would report the
    # parent's peak at fork time.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else host_peak()
json.dump({"peak_bytes": peak}, open(sys.argv[1], "w"))
"""


def section_memory(model: str, dataset: str, device: torch.device) -> dict[str, float]:
    print(f"\n[4] peak memory of a full run ({model} on {dataset}, grad_cam, deletion+insertion)")
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (100, 1000):
            out = Path(tmp) / f"{n}.json"
            args = [f"model={model}", f"dataset={dataset}", "method=grad_cam",
                    "metrics=[deletion,insertion]", f"dataset.limit={n}", f"device={device}",
                    f"out_dir={tmp}/out{n}", f"tracking.uri=sqlite:///{tmp}/m{n}.db",
                    "batch_size=32"]
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", MEMORY_SNIPPET, str(out), *args], check=True,
                           capture_output=True, cwd=tmp)
            res[n] = json.loads(out.read_text())["peak_bytes"] / 2**20
            print(f"    {n:5d} images: peak {res[n]:8.1f} MiB   ({time.perf_counter() - t0:.0f} s)")
    print(f"    1000 / 100 images: {res[1000] / res[100]:.3f}x   (target: flat)")
    return {"mem_100_mib": res[100], "mem_1000_mib": res[1000], "mem_ratio": res[1000] / res[100]}


def section_autocast(s: Setup, reps: int, device: torch.device, chunk: int) -> dict[str, float]:
    from scipy.stats import spearmanr
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    print(f"\n[5] autocast {str(dtype).split('.')[1]} vs fp32 ({s.name}, {s.x.shape[0]} images)")
    dele = metrics.get("deletion").fn
    names = ["saliency", "grad_cam", "gradient_x_input", "guided_backprop", "random"]
    per: dict[str, list[Tensor]] = {"fp32": [], "amp": []}
    times = {"fp32": 0.0, "amp": 0.0}
    for name in names:
        kw = {"layer": s.layer} if methods.get(name).info.needs_layer else {}
        heat = methods.get(name).fn(s.model, s.x, s.target, **kw)
        for mode in per:
            def go() -> Tensor:
                with torch.autocast(device.type, dtype=dtype, enabled=mode == "amp"):
                    return dele(s.model, s.x, heat, s.target, chunk=chunk)["deletion"]
            per[mode].append(go().float().cpu())
            times[mode] += compare({"go": go}, max(1, reps // 2), device)["go"]
    a, b = torch.cat(per["fp32"]), torch.cat(per["amp"])
    rho = spearmanr(a, b)[0]
    means = [float(m.mean()) for m in per["fp32"]], [float(m.mean()) for m in per["amp"]]
    rank = spearmanr(*means)[0]
    print(f"    per-sample deletion AUC Spearman {rho:.4f} over {len(a)} (target >= 0.99); "
          f"method ranking Spearman {rank:.3f}; max |diff| {float((a - b).abs().max()):.4f}; "
          f"speed-up {times['fp32'] / times['amp']:.2f}x")
    return {"autocast_spearman": rho, "autocast_rank_spearman": rank,
            "autocast_speedup": times["fp32"] / times["amp"]}


# --- Section 6: every metric that Quantus 0.6 also has, ours against Quantus ---------------

def count_forwards(model: nn.Module) -> tuple[dict[str, int], Callable[[], None]]:
    """A forward hook counting the images ``model`` sees; returns (counter, remove)."""
    seen = {"images": 0}

    def hook(module, args, output) -> None:
        seen["images"] += int(args[0].shape[0])
    handle = model.register_forward_hook(hook)
    return seen, handle.remove


def quantus_pairs(s: Setup, batch, chunk: int) -> list[tuple[str, Callable, Callable, str]]:
    """(metric, ours, Quantus, settings) for every metric with a Quantus 0.6 counterpart,
    on the same model, images, targets and maps (Grad-CAM; the explain-based metrics use
    the plain input gradient on both sides). Counts (samples, steps, patches) are set
    equal where both sides have them; the remaining differences are in the note."""
    import numpy as np
    import quantus

    from faithbench.metrics.inside import regions
    if not hasattr(np, "trapz"):  # NumPy >= 2.4 removed np.trapz, which Quantus 0.6 calls
        np.trapz = np.trapezoid
    model, x, t = s.model, s.x, s.target
    heat = methods.get("grad_cam").fn(model, x, t, layer=s.layer)
    gt = regions(batch, t, tuple(x.shape[-2:]), "auto", x.device)[0]
    xa, ya, aa = x.cpu().numpy(), t.cpu().numpy(), heat[:, None].cpu().numpy()
    sa = gt[:, None].float().cpu().numpy()
    hw = x.shape[-2] * x.shape[-1]
    classes = int(model(x[:1]).shape[1])

    def explain(z: Tensor, target: Tensor, model: nn.Module = model) -> Tensor:
        """The plain gradient summed over channels, of ``model`` (the randomisation
        metrics pass their re-initialised copies)."""
        with torch.enable_grad():
            z = z.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model(z).gather(1, target.view(-1, 1)).sum(), z)
        return g.sum(1)

    def q_explain(model, inputs, targets, **kwargs):
        z = torch.as_tensor(inputs, dtype=torch.float32, device=x.device)
        return explain(z, torch.as_tensor(targets, device=x.device).long(), model)[:, None].cpu().numpy()

    q_kw = dict(disable_warnings=True, display_progressbar=False)
    call_kw = dict(model=model, x_batch=xa, y_batch=ya, a_batch=aa, device=str(x.device),
                   channel_first=True, batch_size=len(xa))
    # Quantus counts steps in channel entries (3 per RGB pixel) and needs H*W to be a
    # multiple of features_in_step; 256 entries = 48 steps at 64x64 RGB, ours 85 pixels = 49.
    fis, pps, steps = 256, 85, 3 * hw // 256

    def ours(name: str, **kw) -> Callable[[], object]:
        fn = metrics.get(name).fn
        return lambda: fn(model, x, heat, t, batch, **kw)

    def theirs(cls: str, extra: dict | None = None, **kw) -> Callable[[], object]:
        with contextlib.redirect_stdout(io.StringIO()):  # its warnings on construction
            metric = getattr(quantus, cls)(**q_kw, **kw)
        return lambda: metric(**dict(call_kw, **(extra or {})))

    gt_kw = {"s_batch": sa}
    ex_kw = {"explain_func": q_explain}
    return [
        ("relevance_mass_accuracy", ours("relevance_mass_accuracy", relevance="signed"),
         theirs("RelevanceMassAccuracy", gt_kw, abs=False, normalise=False), "signed map both"),
        ("relevance_rank_accuracy", ours("relevance_rank_accuracy", relevance="signed"),
         theirs("RelevanceRankAccuracy", gt_kw, abs=False, normalise=False), "ours ties=random"),
        ("attribution_localisation", ours("attribution_localisation", ground_truth="masks"),
         theirs("AttributionLocalisation", gt_kw, positive_attributions=True, abs=False, normalise=False), ""),
        ("top_k_intersection", ours("top_k_intersection", k=1000, relevance="signed"),
         theirs("TopKIntersection", gt_kw, k=1000, abs=False, normalise=False), "k=1000"),
        ("pointing_game", ours("pointing_game", tolerance=0.5),
         theirs("PointingGame", gt_kw), "ours 0.5 px tolerance, Quantus exact argmax"),
        ("sparseness", ours("sparseness"), theirs("Sparseness"), ""),
        ("complexity", ours("complexity"), theirs("Complexity"), ""),
        ("effective_complexity", ours("effective_complexity"),
         theirs("EffectiveComplexity"), "Quantus's defaults: |map| / max"),
        ("faithfulness_correlation", ours("faithfulness_correlation", subset=224, n_samples=100, chunk=chunk),
         theirs("FaithfulnessCorrelation", {"softmax": False}, subset_size=224, nr_runs=100,
                perturb_baseline="black", normalise=False),
         "224 pixels (ours) vs 224 channel entries (Quantus), 100 draws"),
        ("faithfulness_estimate", ours("faithfulness_estimate", pixels_per_step=pps, chunk=chunk),
         theirs("FaithfulnessEstimate", {"softmax": False}, features_in_step=fis, normalise=False),
         f"{-(-hw // pps)} vs {steps} steps"),
        ("monotonicity", ours("monotonicity", step=1 / steps, chunk=chunk),
         theirs("Monotonicity", {"softmax": True}, features_in_step=fis, abs=False, normalise=False),
         f"{steps} steps"),
        ("monotonicity_correlation",
         ours("monotonicity_correlation", step=1 / steps, n_samples=10, chunk=chunk),
         theirs("MonotonicityCorrelation", {"softmax": True}, nr_samples=10, features_in_step=fis,
                normalise=False), f"{steps} groups x 10 draws"),
        ("region_perturbation", ours("region_perturbation", patch=8, regions=32, chunk=chunk),
         theirs("RegionPerturbation", {"softmax": True}, patch_size=8, regions_evaluation=32,
                normalise=False), "8x8 patches, 32 regions"),
        ("selectivity", ours("selectivity", patch=8, chunk=chunk),
         theirs("Selectivity", {"softmax": True}, patch_size=8, normalise=False), "8x8 patches"),
        ("irof", ours("irof", chunk=chunk), theirs("IROF", {"softmax": True}, normalise=False),
         "SLIC defaults of each (Quantus fails on RGB input, docs/metrics.md)"),
        ("sensitivity_n", ours("sensitivity_n", n_samples=5, chunk=chunk),
         theirs("SensitivityN", {"softmax": False}, features_in_step=fis, normalise=False),
         "ours 8 sizes x 5 random subsets, Quantus one growing subset of 256 entries a step"),
        ("infidelity", ours("infidelity", n_samples=10, chunk=chunk),
         theirs("Infidelity", {"softmax": False}, n_perturb_samples=10, perturb_patch_sizes=[16],
                normalise=False),
         "10 draws; Quantus perturbs each 16x16 patch in turn per draw"),
        ("road", ours("road", chunk=chunk, noise=0.0),
         theirs("ROAD", {"softmax": True},
                percentages=list(range(10, 100, 10)), noise=0.0, normalise=False),
         "9 fractions; Quantus fails on RGB input, docs/metrics.md"),
        ("completeness", ours("completeness"), theirs("Completeness", normalise=False), ""),
        ("input_invariance", ours("input_invariance", explain=explain),
         theirs("InputInvariance", ex_kw), "plain gradient"),
        ("random_logit", ours("random_logit", explain=explain, num_classes=classes),
         theirs("RandomLogit", ex_kw, num_classes=classes, normalise=False), "plain gradient"),
        ("model_randomisation", ours("model_randomisation", explain=explain),
         theirs("MPRT", ex_kw, normalise=False), "plain gradient, every layer"),
        ("smooth_mprt", ours("smooth_mprt", explain=explain, n_samples=5),
         theirs("SmoothMPRT", ex_kw, nr_samples=5, normalise=False), "5 noisy copies"),
        ("efficient_mprt", ours("efficient_mprt", explain=explain),
         theirs("EfficientMPRT", ex_kw), "plain gradient"),
    ]


def section_quantus_metrics(s: Setup, batch, reps: int, device: torch.device, chunk: int,
                            only: set[str] | None = None) -> list[dict]:
    """Every metric Quantus 0.6 also has: median seconds of ours and of Quantus on the
    same model, images and maps, and the images each side sends through the model."""
    print(f"\n[6] metrics vs Quantus 0.6 ({s.name}, {s.x.shape[0]} images "
          f"{tuple(s.x.shape[-2:])}, Grad-CAM maps; ours chunk {chunk}; Quantus / ours, "
          f"> 1 means faithbench is faster)")
    try:
        import quantus  # noqa: F401
    except ImportError:
        print("    quantus not installed (pip install 'faithbench[compare]')")
        return []
    rows = []
    seen, remove = count_forwards(s.model)
    try:
        for name, ours, peer, note in quantus_pairs(s, batch, chunk):
            if only and name not in only:
                continue
            fwd = {}
            for side, fn in (("ours", ours), ("quantus", peer)):
                seen["images"] = 0
                try:
                    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                        fn()
                    fwd[side] = seen["images"] / s.x.shape[0]
                except Exception as e:  # a peer failing must not hide the others
                    fwd[side] = f"{type(e).__name__}: {str(e)[:70]}"
            if isinstance(fwd["ours"], str):
                print(f"    {name:26s} ours failed: {fwd['ours']}", flush=True)
                rows.append({"metric": name, "error": fwd["ours"]})
                continue
            if isinstance(fwd["quantus"], str):  # time ours alone
                with contextlib.redirect_stdout(io.StringIO()):
                    t_ours = compare({"ours": ours}, reps, device)["ours"]
                print(f"    {name:26s} ours {t_ours:8.4f} s  quantus failed: {fwd['quantus']}   "
                      f"forwards/image {fwd['ours']:6.0f}", flush=True)
                rows.append({"metric": name, "ours_s": t_ours, "ours_forwards": fwd["ours"],
                             "error": fwd["quantus"], "note": note})
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                got = compare({"ours": ours, "quantus": peer}, reps, device)
            ratio = got["quantus"] / got["ours"]
            print(f"    {name:26s} ours {got['ours']:8.4f} s  quantus {got['quantus']:8.4f} s  "
                  f"{ratio:6.2f}x   forwards/image {fwd['ours']:6.0f} vs {fwd['quantus']:6.0f}"
                  f"{'   (' + note + ')' if note else ''}", flush=True)
            rows.append({"metric": name, "ours_s": got["ours"], "quantus_s": got["quantus"],
                         "ratio": ratio, "ours_forwards": fwd["ours"], "quantus_forwards": fwd["quantus"],
                         "note": note})
    finally:
        remove()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--model", help="one model for every section (default: by device)")
    p.add_argument("--images", type=int, default=0, help="images for sections 1, 2, 5")
    p.add_argument("--chunk", type=int, help="metric chunk (default: the runner's: 128, "
                   "capped by cpu_chunk on CPU; methods use min(64, chunk))")
    p.add_argument("--sections", default="1,2,3,4,5")
    p.add_argument("--batches", default="1,32", help="batch sizes of section 3")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--quantus-metrics", default="", help="section 6: only these metrics "
                   "(comma-separated; default every metric Quantus also has)")
    p.add_argument("--quantus-images", type=int, default=4, help="images of section 6")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's); on a "
                   "saturated CPU one thread keeps tiny tensor ops from waiting on each other")
    a = p.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    torch.manual_seed(0)
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = device.type == "cuda"
    big = a.model or ("resnet50_random" if cuda else "efficientnet_lite0")
    small = a.model or ("resnet50_random" if cuda else "shapes_cnn")
    cpu_chunk = compose([])["cpu_chunk"]

    def chunk_for(s: Setup) -> int:  # the runner's default for this device and input size
        cap = cpu_chunk_cap(cpu_chunk, device, s.x.shape[-1])
        return a.chunk or min(128, cap or 128)
    ds = {"shapes_cnn": "shapes"}
    n = a.images or (64 if cuda else 8)
    print(f"faithbench speed benchmark: torch {torch.__version__}, device {device}"
          f"{' ' + torch.cuda.get_device_name(device) if cuda else ''}, "
          f"{torch.get_num_threads()} CPU threads, median of {a.reps} after warm-up")
    want, res = set(a.sections.split(",")), {}
    if want & {"1", "2", "5"}:
        s = setup(big, ds.get(big, "photos"), n, device)
        chunk = chunk_for(s)
        if "1" in want:
            res.update(section_overhead(s, a.reps, device, chunk))
        if "2" in want:
            res.update(section_quantus(s, a.reps, device, n=n if cuda else 4, chunk=chunk))
        if "5" in want:
            res.update(section_autocast(s, a.reps, device, chunk))
    if "2" in want and small != big:  # where forwards are cheap, Quantus's own work shows
        s = setup(small, ds.get(small, "photos"), 4, device)
        got = section_quantus(s, a.reps, device, n=4, chunk=chunk_for(s))
        res.update({f"{k}_{small}": v for k, v in got.items()})
    if "3" in want:
        s = setup(small, ds.get(small, "photos"), 32, device)
        res["methods"] = section_methods(s, a.reps, device, n_masks=300 if not cuda else 4000,
                                         batches=tuple(int(b) for b in a.batches.split(",")),
                                         chunk=min(64, chunk_for(s)))
    if "4" in want:
        mem_model = "shapes_cnn" if small == "resnet50_random" else small
        res.update(section_memory(mem_model, ds.get(mem_model, "photos"), device))
    if "6" in want:
        s6 = setup(small if small != "resnet50_random" else "shapes_cnn", "shapes", a.quantus_images, device)
        ds6 = datasets.build("shapes", models.load("shapes_cnn").preprocess)
        batch6 = stack([ds6[i % len(ds6)] for i in range(a.quantus_images)], list(range(a.quantus_images)))
        only = set(a.quantus_metrics.split(",")) - {""}
        res["quantus_metrics"] = section_quantus_metrics(s6, batch6, a.reps, device, chunk_for(s6), only)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
