"""What a run logs besides its numbers: per-sample parquet, mean curves, a gallery of
images with their maps (npz) and its heatmap grid (png)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from faithbench import schema
from faithbench.errors import ConfigError
from faithbench.pixels import heatmap_grid, save_pixels
from faithbench.types import stack

if TYPE_CHECKING:
    from faithbench.run import Job


def write(job: Job, df: pd.DataFrame, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "samples.parquet"]
    df.to_parquet(paths[0], index=False)
    curves = {k: np.stack(df.loc[df["status"] == "ok", k].to_numpy()).mean(0)
              for k in df.columns if schema.is_curve(k) and (df["status"] == "ok").any()}
    if curves:
        paths.append(out / "curves.csv")
        pd.DataFrame({k: pd.Series(v) for k, v in curves.items()}).to_csv(paths[-1], index_label="step")
    n = job.settings.figures_grid
    if n is None:
        raise ConfigError("figures.grid is not set: the number of images in the heatmap grid "
                          "(0 for none)")
    if n > 0 and (df["status"] == "ok").any():
        g = gallery(job, df[df["status"] == "ok"].head(n))
        names = job.scorer.spec.class_names
        titles = [names[t] if 0 <= t < len(names) else str(t) for t in g["target"]]
        grid = heatmap_grid(g["images"] / 255.0, g["maps"].astype(np.float32), titles, job.scorer.method)
        # zlib and the PNG encoder release the interpreter: the two files are compressed
        # side by side (photos: 48-64 -> 34-37 ms, shapes: 15-17 -> 12 ms)
        with ThreadPoolExecutor(1) as pool:
            png = pool.submit(save_pixels, grid, out / "heatmap_grid.png")
            paths.append(save_npz(out / "gallery.npz", g))
            paths.append(png.result())
    return paths


def save_npz(path: Path, arrays: dict[str, np.ndarray], level: int = 1) -> Path:
    """``arrays`` as a compressed ``.npz`` that ``np.load`` reads, at zlib ``level``
    (``np.savez_compressed`` always uses 6: a run's gallery took 16 ms to write there,
    about half of it at 1, for files a few per cent larger). Returns ``path``."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    return path


def gallery(job: Job, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The first rows' images and maps, for figures drawn later without recomputing:
    ``images`` [N,H,W,3] uint8, ``maps`` [N,H,W] fp16 (raw / max|map|), ``ids``,
    ``target``, ``pred``, ground-truth ``boxes`` [M,4] xyxy in model-input pixels with
    ``box_sample`` [M] (row of each box) and ``box_labels`` [M], ``scale``/``offset``
    [N,2] (y, x) back to original pixels, ``class_names``. Samples scored in this
    process are not read again (``Job.scored``); maps come from the cache when it is on;
    rows of another image size than the first are left out."""
    sc = job.scorer
    samples = [job.scored[i] if i in job.scored else job.dataset[i] for i in map(int, rows["index"])]
    keep = [k for k, s in enumerate(samples) if s.image.shape == samples[0].image.shape]
    rows = rows.iloc[keep]
    batch = stack([samples[k] for k in keep], rows["index"].tolist()).to(sc.device)
    target = torch.tensor(rows["target"].to_numpy(dtype="int64"), device=sc.device)
    maps = sc.heatmaps(batch, target, [f"{i}#{t}" for i, t in zip(rows["image_id"], rows["target"])])
    scale = maps.flatten(1).abs().nan_to_num(0).amax(1).clamp_min(1e-30).view(-1, 1, 1)
    images = sc.spec.preprocess.denormalize(batch.images).permute(0, 2, 3, 1)
    boxes, box_sample, box_labels = [np.zeros((0, 4), np.float32)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for k, s in enumerate(samples[i] for i in keep):
        if s.boxes is not None and s.box_labels is not None:
            boxes.append(s.boxes.numpy().astype(np.float32))
            box_sample.append(np.full(len(s.boxes), k))
            box_labels.append(s.box_labels.numpy().astype(np.int64))
    return {
        "images": (images.cpu().numpy() * 255).round().astype(np.uint8),
        "maps": (maps / scale).cpu().numpy().astype(np.float16),
        "ids": rows["id"].to_numpy(dtype=str), "target": rows["target"].to_numpy(dtype=np.int64),
        "pred": rows["pred"].to_numpy(dtype=np.int64),
        "boxes": np.concatenate(boxes), "box_sample": np.concatenate(box_sample),
        "box_labels": np.concatenate(box_labels),
        "scale": batch.scale.numpy(), "offset": batch.offset.numpy(),
        "class_names": np.asarray(sc.spec.class_names, dtype=str),
    }
