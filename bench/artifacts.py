"""What a run logs besides its numbers: per-sample parquet, mean curves, a heatmap grid."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from faithbench.figures import heatmap_grid
from faithbench.types import stack

if TYPE_CHECKING:
    from faithbench.run import Job


def write(job: Job, df: pd.DataFrame, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "samples.parquet"]
    df.to_parquet(paths[0], index=False)
    curves = {k: np.stack(df.loc[df["status"] == "ok", k].to_numpy()).mean(0)
              for k in df.columns if k.endswith("_curve") and (df["status"] == "ok").any()}
    if curves:
        paths.append(out / "curves.csv")
        pd.DataFrame({k: pd.Series(v) for k, v in curves.items()}).to_csv(paths[-1], index_label="step")
    n = int(job.cfg.figures.grid)
    if n > 0 and (df["status"] == "ok").any():
        paths.append(out / "heatmap_grid.png")
        grid(job, df[df["status"] == "ok"].head(n)).savefig(paths[-1], dpi=120)
    return paths


def grid(job: Job, rows: pd.DataFrame):
    """The heatmap grid of ``rows``, maps read back from the cache when it is on."""
    sc = job.scorer
    samples = [job.dataset[int(i)] for i in rows["index"]]
    shape = samples[0].image.shape
    keep = [k for k, s in enumerate(samples) if s.image.shape == shape]
    rows = rows.iloc[keep]
    batch = stack([samples[k] for k in keep], rows["index"].tolist()).to(sc.device)
    target = torch.tensor(rows["target"].to_numpy(dtype="int64"), device=sc.device)
    maps = sc.heatmaps(batch, target, [f"{i}#{t}" for i, t in zip(rows["image_id"], rows["target"])])
    names = sc.spec.class_names
    titles = [names[t] if t < len(names) else str(t) for t in rows["target"]]
    images = sc.spec.preprocess.denormalize(batch.images).permute(0, 2, 3, 1)
    import matplotlib.pyplot as plt

    fig = heatmap_grid(images.cpu().numpy(), maps.cpu().numpy(), titles, sc.method)
    plt.close(fig)
    return fig
