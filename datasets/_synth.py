"""Procedural scenes for the synthetic tracks: composable pieces, sampled then rendered.

A scene is a textured background, one class-defining shape, distractors of other shape
families (thin bars, hollow rings: never a filled class shape) and an optional coloured
marker. Sampling (:func:`sample_scene`) is plain Python, seeded by ``(seed, index)``;
rendering (:func:`render`) is vectorised in torch over a batch of scenes and can leave
pieces out (``drop``), which re-draws exactly the background where the piece was — the
intervention the known-truth track needs to remove one cue.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from faithbench.datasets._synth_draw import polygon_mask, shape_polygon
from faithbench.labels import MARKER_CLASSES, SHAPES_CLASSES

CLASS_SHAPES = SHAPES_CLASSES  # label = index here
DISTRACTOR_KINDS = ("bar", "ring")
MARKER_COLOURS = dict(zip(MARKER_CLASSES, [(0.95, 0.1, 0.1), (0.1, 0.85, 0.1),
                                           (0.1, 0.2, 0.95), (0.95, 0.9, 0.1)]))
GRID = 4  # side of the smooth-noise grid of the background texture
Colour = tuple[float, float, float]


@dataclass(frozen=True)
class Background:
    base: Colour
    stripes: tuple[float, float, float, float]  # frequency (rad/px), angle, phase, amplitude
    blobs: tuple[float, ...]  # 3*GRID*GRID smooth-noise values in [-1, 1]
    noise_seed: int  # seeds the per-pixel noise


@dataclass(frozen=True)
class Shape:
    kind: int  # index into CLASS_SHAPES
    cx: float
    cy: float
    r: float  # circumradius in pixels
    angle: float
    colour: Colour


@dataclass(frozen=True)
class Distractor:
    kind: int  # index into DISTRACTOR_KINDS
    cx: float
    cy: float
    length: float  # bar length, or ring outer radius
    width: float  # bar width, or ring thickness
    angle: float
    colour: Colour


@dataclass(frozen=True)
class Marker:
    cx: float
    cy: float
    half: float  # half side of the axis-aligned square, pixels
    colour: int  # index into MARKER_COLOURS


@dataclass(frozen=True)
class Scene:
    size: int
    background: Background
    shape: Shape
    distractors: tuple[Distractor, ...] = ()
    marker: Marker | None = None


def _rgb(rng: random.Random) -> Colour:
    return (rng.random(), rng.random(), rng.random())


def _contrasting(rng: random.Random, ref: Colour, min_dist: float = 0.5) -> Colour:
    """A random colour at least ``min_dist`` (RGB Euclidean) from ``ref`` (the farthest of
    16 draws if none is far enough), so that objects never melt into the background."""
    best, best_d = ref, -1.0
    for _ in range(16):
        c = _rgb(rng)
        d = math.dist(c, ref)
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def _place(rng: random.Random, size: int, extent: float, taken: list[tuple[float, float, float]],
           tries: int = 30) -> tuple[float, float] | None:
    """A centre at least ``extent`` from the border and clear of ``taken`` discs."""
    for _ in range(tries):
        x, y = rng.uniform(extent, size - extent), rng.uniform(extent, size - extent)
        if all(math.hypot(x - tx, y - ty) >= extent + tr + 2 for tx, ty, tr in taken):
            return x, y
    return None


def sample_scene(seed: int, index: int, size: int = 64, max_distractors: int = 3,
                 marker: bool = False, marker_half: float = 0.05) -> Scene:
    """Draw the scene for ``(seed, index)``: the same pair gives the same scene anywhere.

    Args:
        size: image side in pixels.
        max_distractors: distractors are drawn uniformly from 0..max_distractors.
        marker: add a small coloured square (colour uniform over MARKER_COLOURS).
        marker_half: the marker's half side as a fraction of ``size``.
    """
    rng = random.Random(f"synth:{seed}:{index}")  # str seeds hash with sha512: stable
    base = _rgb(rng)
    bg = Background(
        base=base,
        stripes=(rng.uniform(0.15, 0.6), rng.uniform(0, math.pi), rng.uniform(0, 2 * math.pi),
                 rng.uniform(0.02, 0.1)),
        blobs=tuple(rng.uniform(-1, 1) for _ in range(3 * GRID * GRID)),
        noise_seed=rng.getrandbits(62),
    )
    r = rng.uniform(0.13, 0.22) * size
    cx, cy = rng.uniform(r + 1, size - r - 1), rng.uniform(r + 1, size - r - 1)
    shape = Shape(rng.randrange(len(CLASS_SHAPES)), cx, cy, r, rng.uniform(0, 2 * math.pi),
                  _contrasting(rng, base))
    taken = [(cx, cy, r)]
    mark = None
    if marker:
        half = max(1.5, marker_half * size)
        pos = _place(rng, size, half * 1.5, taken) or (
            (size - cx, size - cy))  # opposite corner: far from the shape
        mark = Marker(pos[0], pos[1], half, rng.randrange(len(MARKER_COLOURS)))
        taken.append((pos[0], pos[1], half * 1.5))
    distractors = []
    for _ in range(rng.randint(0, max_distractors)):
        kind = rng.randrange(len(DISTRACTOR_KINDS))
        if kind == 0:  # thin bar
            length, width = rng.uniform(0.15, 0.35) * size, rng.uniform(1.2, 2.2)
            extent = length / 2
        else:  # hollow ring: outer radius large enough that its hole stays visible
            length, width = rng.uniform(0.08, 0.14) * size, rng.uniform(1.2, 2.0)
            extent = length
        pos = _place(rng, size, extent + 1, taken)
        if pos is None:
            continue
        taken.append((pos[0], pos[1], extent))
        distractors.append(Distractor(kind, pos[0], pos[1], length, width,
                                      rng.uniform(0, math.pi), _contrasting(rng, base, 0.4)))
    return Scene(size, bg, shape, tuple(distractors), mark)


@dataclass
class Rendered:
    """A rendered batch: ``image`` [B,3,S,S] RGB in [0,1]; bool masks [B,S,S] of the
    visible class shape, marker and distractors (all False for dropped pieces)."""

    image: Tensor
    shape_mask: Tensor
    marker_mask: Tensor
    distractor_mask: Tensor


def render(scenes: Sequence[Scene], drop: Collection[str] = ()) -> Rendered:
    """Rasterise scenes of one size; ``drop`` ⊆ {"shape", "marker", "distractors"}
    leaves those pieces out (their pixels show the background)."""
    from faithbench.datasets._synth_draw import (background, distractor_masks, marker_masks,
                                                 pixel_noise)

    s = scenes[0].size
    if any(sc.size != s for sc in scenes):
        raise ValueError("render: all scenes of a batch must have the same size")
    img = background([sc.background for sc in scenes], s)  # [B,3,S,S]
    b = len(scenes)
    dist = torch.zeros(b, s, s, dtype=torch.bool)
    if "distractors" not in drop:
        masks, colours = distractor_masks([sc.distractors for sc in scenes], s)  # [B,D,S,S]
        for d in range(masks.shape[1]):
            m = masks[:, d, None]
            img = torch.where(m, colours[:, d, :, None, None], img)
        dist = masks.any(1)
    mark = torch.zeros(b, s, s, dtype=torch.bool)
    if "marker" not in drop and any(sc.marker is not None for sc in scenes):
        mark, mcol = marker_masks([sc.marker for sc in scenes], s)
        img = torch.where(mark[:, None], mcol[:, :, None, None], img)
    shp = torch.zeros(b, s, s, dtype=torch.bool)
    if "shape" not in drop:
        poly = torch.stack([shape_polygon(sc.shape) for sc in scenes])  # [B,V,2]
        shp = polygon_mask(poly, s)
        col = torch.tensor([sc.shape.colour for sc in scenes])
        img = torch.where(shp[:, None], col[:, :, None, None], img)
    img = (img + pixel_noise([sc.background for sc in scenes], s)).clamp(0, 1)
    # Later pieces cover earlier ones: masks report what is visible.
    return Rendered(img, shp, mark & ~shp, dist & ~shp & ~mark)
