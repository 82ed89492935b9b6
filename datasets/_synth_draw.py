"""Vectorised rasterisers for the synthetic scenes of ``_synth``: each works on a batch
and tests pixel centres ``(i + 0.5)``, so masks are exact for what is drawn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from faithbench.datasets._synth import Background, Distractor, Marker, Shape

VERTICES = 24  # polygons are padded to this many vertices (the circle uses all)
NOISE_STD = 0.02  # per-pixel Gaussian noise on the final image


def _pad(pts: list[tuple[float, float]]) -> Tensor:
    # Repeating the first vertex adds only zero-length edges, which cross nothing.
    return torch.tensor(pts + [pts[0]] * (VERTICES - len(pts)), dtype=torch.float32)


def _ring(n: int, radii: Sequence[float], start: float) -> list[tuple[float, float]]:
    return [(radii[k % len(radii)] * math.cos(start + 2 * math.pi * k / n),
             radii[k % len(radii)] * math.sin(start + 2 * math.pi * k / n)) for k in range(n)]


_A, _L = 0.3, 0.95  # cross: arm half-width and arm length, in circumradius units
UNIT_POLYGONS = torch.stack([  # [5,V,2], unit circumradius, order of CLASS_SHAPES
    _pad(_ring(VERTICES, [0.85], 0.0)),  # circle
    _pad(_ring(4, [0.95], math.pi / 4)),  # square
    _pad(_ring(3, [1.0], -math.pi / 2)),  # triangle
    _pad(_ring(10, [1.0, 0.42], -math.pi / 2)),  # star (5 points)
    _pad([(_A, -_L), (_A, -_A), (_L, -_A), (_L, _A), (_A, _A), (_A, _L), (-_A, _L),
          (-_A, _A), (-_L, _A), (-_L, -_A), (-_A, -_A), (-_A, -_L)]),  # cross
])


def _grid(size: int) -> tuple[Tensor, Tensor]:
    c = torch.arange(size, dtype=torch.float32) + 0.5
    return c.view(1, 1, size), c.view(1, size, 1)  # X [1,1,S], Y [1,S,1]


def shape_polygon(shape: Shape) -> Tensor:
    """The class shape as pixel-space vertices [V,2] (x, y)."""
    c, s = math.cos(shape.angle), math.sin(shape.angle)
    rot = torch.tensor([[c, s], [-s, c]])  # row vectors: p @ rot rotates by +angle
    return UNIT_POLYGONS[shape.kind] @ rot * shape.r + torch.tensor([shape.cx, shape.cy])


def polygon_mask(poly: Tensor, size: int) -> Tensor:
    """Even-odd point-in-polygon test of pixel centres.

    Args:
        poly: [B,V,2] vertices (x, y) in pixels, closed implicitly.
    Returns:
        [B,S,S] bool.
    """
    inside = torch.zeros(poly.shape[0], size, size, dtype=torch.bool)
    for start in range(0, poly.shape[0], 32):  # chunks bound the [b,V,h,w] temporaries
        chunk = poly[start : start + 32]
        # Only pixels inside the chunk's bounding box can be inside a polygon.
        lo = chunk.amin((0, 1)).floor().clamp(0, size).long().tolist()
        hi = chunk.amax((0, 1)).ceil().clamp(0, size).long().tolist()
        xs = torch.arange(lo[0], hi[0], dtype=torch.float32).view(1, 1, 1, -1) + 0.5
        ys = torch.arange(lo[1], hi[1], dtype=torch.float32).view(1, 1, -1, 1) + 0.5
        x1, y1 = chunk[..., 0, None, None], chunk[..., 1, None, None]  # [b,V,1,1]
        nxt = chunk.roll(-1, dims=1)
        x2, y2 = nxt[..., 0, None, None], nxt[..., 1, None, None]
        straddles = (y1 > ys) != (y2 > ys)
        dy = torch.where(y2 == y1, torch.ones_like(y2), y2 - y1)
        crossings = straddles & (xs < x1 + (ys - y1) * (x2 - x1) / dy)
        inside[start : start + 32, lo[1] : hi[1], lo[0] : hi[0]] = crossings.sum(1) % 2 == 1
    return inside


def background(bgs: Sequence[Background], size: int) -> Tensor:
    """Textured backgrounds [B,3,S,S]: base colour + luminance stripes + smooth colour
    noise (bilinear upsampling of a GRIDxGRID field), before clamping and pixel noise."""
    from faithbench.datasets._synth import GRID

    base = torch.tensor([b.base for b in bgs])[:, :, None, None]
    f, ang, ph, amp = (torch.tensor(v)[:, None, None] for v in zip(*[b.stripes for b in bgs]))
    xs, ys = _grid(size)
    # sin(a + b) = sin a cos b + cos a sin b: transcendental functions only on [B,1,S] and
    # [B,S,1] (cheap, and never big enough to wake a thread pool).
    a, b = f * xs * torch.cos(ang), f * ys * torch.sin(ang) + ph
    stripes = amp * (torch.sin(a) * torch.cos(b) + torch.cos(a) * torch.sin(b))
    blobs = torch.tensor([b.blobs for b in bgs]).view(-1, 3, GRID, GRID)
    blobs = F.interpolate(blobs, size=(size, size), mode="bilinear", align_corners=True)
    return base + stripes[:, None] + 0.15 * blobs


def pixel_noise(bgs: Sequence[Background], size: int) -> Tensor:
    """Per-pixel Gaussian noise [B,3,S,S], seeded per scene (identical across drops)."""
    gens = [torch.Generator().manual_seed(b.noise_seed) for b in bgs]
    return torch.stack([torch.randn(3, size, size, generator=g) for g in gens]) * NOISE_STD


def distractor_masks(per_scene: Sequence[Sequence[Distractor]], size: int
                     ) -> tuple[Tensor, Tensor]:
    """Masks [B,D,S,S] and colours [B,D,3] of up to D distractors per scene (bars: rotated
    rectangles; rings: annuli); missing slots are empty."""
    b, d = len(per_scene), max((len(p) for p in per_scene), default=0)
    prm = torch.zeros(b, d, 6)  # present, kind, cx, cy, length, width, (angle below)
    ang = torch.zeros(b, d)
    col = torch.zeros(b, d, 3)
    for i, ds in enumerate(per_scene):
        for j, t in enumerate(ds):
            prm[i, j] = torch.tensor([1.0, t.kind, t.cx, t.cy, t.length, t.width])
            ang[i, j] = t.angle
            col[i, j] = torch.tensor(t.colour)
    present, kind, cx, cy, length, width = (prm[..., k, None, None] for k in range(6))
    xs, ys = _grid(size)
    dx, dy = xs[None] - cx, ys[None] - cy  # [B,D,S,S] after broadcasting
    cos, sin = ang.cos()[..., None, None], ang.sin()[..., None, None]
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    bar = (u.abs() <= length / 2) & (v.abs() <= width / 2)
    rad2 = dx * dx + dy * dy  # squared radius: no sqrt over [B,D,S,S]
    ring = (rad2 <= length * length) & (rad2 >= (length - width) ** 2)
    return torch.where(kind == 0, bar, ring) & (present > 0), col


def marker_masks(markers: Sequence[Marker | None], size: int) -> tuple[Tensor, Tensor]:
    """Masks [B,S,S] of the axis-aligned marker squares and their colours [B,3]."""
    from faithbench.datasets._synth import MARKER_COLOURS

    palette = list(MARKER_COLOURS.values())
    p = torch.tensor([[m.cx, m.cy, m.half, 1.0] if m else [0.0, 0.0, 0.0, 0.0] for m in markers])
    col = torch.tensor([palette[m.colour] if m else (0.0, 0.0, 0.0) for m in markers])
    xs, ys = _grid(size)
    cx, cy, half, present = (p[:, k, None, None] for k in range(4))
    mask = ((xs - cx).abs() <= half) & ((ys - cy).abs() <= half) & (present > 0)
    return mask, col
