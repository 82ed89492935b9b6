"""The report's galleries drawn as one mosaic image: each cell is the blend of its
sample's image and its method's map (recomputed here per cell), boxes and points land
at the cell's offset plus their coordinate, every title and label is on the figure, and
a method's view is a PNG whose column titles the HTML page shows as text."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faithbench.pixels import blend, mosaic, rgb8
from faithbench.report import gallery as G
from faithbench.report import page
from faithbench.report.webpage import _samples

H, W = 6, 10  # non-square on purpose
METHODS = ["grad_cam", "a_rather_long_method_name", "random"]
NAMES = np.array(["cat", "dog", "boat"])


def _gallery(rng: np.random.Generator, ids: list[str], signed: bool, h: int = H, w: int = W) -> G.Gallery:
    n = len(ids)
    maps = rng.normal(size=(n, h, w)) if signed else rng.random((n, h, w))
    maps[0, 0, 0] = np.nan  # shown as 0
    return {"images": rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), "maps": maps.astype(np.float16),
            "ids": np.array(ids), "target": np.arange(n) % 3, "pred": np.zeros(n, int),
            # sample 0: a box of its class (0) and one of another class; sample 1 (class 1): one of class 2
            "boxes": np.array([[1, 2, 5, 4], [0, 0, 2, 2], [3, 1, 9, 5]], np.float32),
            "box_sample": np.array([0, 0, 1]), "box_labels": np.array([0, 1, 2]),
            "class_names": NAMES}


@pytest.fixture
def setup():
    rng = np.random.default_rng(0)
    ids = ["s0", "s1", "s2", "s3"]
    gals = {m: _gallery(rng, ids, signed=(m == "a_rather_long_method_name")) for m in METHODS}
    gals["a_rather_long_method_name"]["maps"][2] = abs(gals["a_rather_long_method_name"]["maps"][2])  # still signed
    for m in METHODS[1:]:  # the same samples' images in every run
        gals[m]["images"] = gals[METHODS[0]]["images"]
    frames = {m: pd.DataFrame({"id": ids, "box_localisation_x0": [2.0, 0, 1, 1], "box_localisation_y0": [1.0, 0, 1, 1],
                               "box_localisation_x1": [7.0, 3, 4, 4], "box_localisation_y1": [5.0, 2, 3, 3],
                               "pointing_game_point": [np.array([3.0, 4.0])] + [np.array([1.0, 1.0])] * 3})
              for m in METHODS}
    frames["random"].loc[0, "box_localisation_x1"] = np.nan  # no prediction for s0: no box drawn
    frames["grad_cam"] = frames["grad_cam"].iloc[1:]  # grad_cam has no row for s0: no box, no point
    b = SimpleNamespace(labels=METHODS, model="m", dataset="d", frame=lambda lab: frames[lab])
    return b, gals


def _cells(fig, rows: int, cols: int, h: int = H, w: int = W) -> tuple[np.ndarray, int]:
    """The figure's one image and the pad between its cells (from its size)."""
    (ax,) = fig.axes
    (im,) = ax.images
    pix = np.asarray(im.get_array())
    pad = (pix.shape[1] - cols * w) // (cols - 1)
    assert pix.shape == (rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, 3)
    return pix, pad


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_mosaic_places_each_cell_at_its_offset():
    rng = np.random.default_rng(1)
    cells = rng.random((2, 3, H, W, 3))
    out = mosaic(cells, 2)
    assert out.shape == (2 * H + 2, 3 * W + 4, 3)
    for i in range(2):
        for j in range(3):
            assert np.array_equal(out[i * (H + 2):i * (H + 2) + H, j * (W + 2):j * (W + 2) + W], cells[i, j])
    assert (out[H:H + 2] == 1).all() and (out[:, W:W + 2] == 1).all()  # white between cells
    out8 = mosaic(rgb8(cells), 2)
    assert out8.dtype == np.uint8 and np.array_equal(out8, rgb8(out))  # white is 255 in 8 bits


def test_rgb8_rounds_and_clips():
    x = np.array([-0.1, 0.0, 0.5 / 255 - 1e-9, 0.5 / 255 + 1e-9, 1.0, 1.2])
    assert rgb8(x).tolist() == [0, 0, 0, 1, 255, 255]


def test_gallery_cells_are_blends_of_each_sample_and_method(setup):
    b, gals = setup
    ids = ["s0", "s2", "s3"]
    fig = G.gallery_figure(b, gals, ids, controls={"random"})
    pix, pad = _cells(fig, len(ids), len(METHODS) + 1)
    first = gals[METHODS[0]]
    for i, sid in enumerate(ids):
        k = int(sid[1])
        y = i * (H + pad)
        assert np.array_equal(pix[y:y + H, :W], first["images"][k])
        for j, m in enumerate(METHODS, start=1):
            signed = bool((gals[m]["maps"] < 0).any())  # one convention per method
            want = blend(first["images"][k] / 255.0, gals[m]["maps"][k].astype(np.float32), signed)
            assert np.array_equal(pix[y:y + H, j * (W + pad):j * (W + pad) + W], rgb8(want))
    assert (pix[H:H + pad] == 255).all()
    texts = _texts(fig)
    flat = [t.replace("\n", "") for t in texts]
    assert "image" in texts and "grad_cam" in texts
    assert "a_rather_long_method_name" in flat and "a_rather_long_method_name" not in texts  # wrapped
    assert "random(control)" in flat and "grad_cam(control)" not in flat
    assert [t for t in texts if t.startswith("s")] == [f"{s}\n{NAMES[int(s[1]) % 3]}" for s in ids]
    assert fig._suptitle.get_text() == "m / d"
    ann = {t.get_text(): t.xy for t in fig.axes[0].texts}
    assert ann["grad_cam"] == ((W + pad) + (W - 1) / 2, -0.5)  # over its own column
    assert ann["s2\nboat"] == (-0.5, (H + pad) + (H - 1) / 2)  # left of its own row


def test_wrap_keeps_every_character():
    for name in ["grad_cam", "a_rather_long_method_name", "_lead", "trail_", "no-underscores-at-all-here", "a__b"]:
        assert G._wrap(name, 8).replace("\n", "") == name
    assert G._wrap("a_rather_long_method_name", 16) == "a_rather_long_\nmethod_name"


def test_a_method_missing_a_sample_leaves_it_out(setup):
    b, gals = setup
    for k in ("images", "maps", "ids", "target"):
        gals["random"][k] = gals["random"][k][[0, 2, 3]]  # random has no s1
    ids = G.common_ids(b, gals, 6)
    assert ids == ["s2", "s3", "s0"]  # in the order of grad_cam's frame, which has no row for s0
    fig = G.gallery_figure(b, gals, ids)
    pix, pad = _cells(fig, 3, len(METHODS) + 1)
    want = blend(gals["random"]["images"][1] / 255.0, gals["random"]["maps"][1].astype(np.float32), False)
    assert np.array_equal(pix[:H, 3 * (W + pad):], rgb8(want))  # its s2 on s2's row


def test_localisation_marks_land_at_the_cell_offsets(setup):
    b, gals = setup
    fig = G.localisation_figure(b, gals, ["s0", "s1", "s2"], controls={"random"})
    # columns: samples with a box of their target class: s0 only (s1's box is of another class)
    (ax,) = fig.axes
    arr = np.asarray(ax.images[0].get_array())
    assert arr.shape[1] == W  # one column
    pad = (arr.shape[0] - len(METHODS) * H) // (len(METHODS) - 1)
    for i, m in enumerate(METHODS):
        want = blend(gals[METHODS[0]]["images"][0] / 255.0, gals[m]["maps"][0].astype(np.float32),
                     bool((gals[m]["maps"] < 0).any()), 0.45)
        assert np.array_equal(arr[i * (H + pad):i * (H + pad) + H], rgb8(want))
    boxes = [(p.get_xy(), p.get_width(), p.get_height(), p.get_edgecolor()[:3], p.get_linestyle())
             for p in ax.patches]
    green = [(xy, wd, ht) for xy, wd, ht, c, _ in boxes if c == (0.0, 1.0, 0.0)]
    red = [(xy, wd, ht) for xy, wd, ht, c, _ in boxes if c == (1.0, 0.0, 0.0)]
    # ground truth (1,2)-(5,4) in every row; pixel edges at -0.5
    assert green == [((0.5, i * (H + pad) + 1.5), 4.0, 2.0) for i in range(len(METHODS))]
    # predicted (2,1)-(7,5) only for the method with a finite box for s0: not grad_cam (no row), not random (NaN)
    assert red == [((1.5, (H + pad) + 0.5), 5.0, 4.0)]
    stars = [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in ax.lines if ln.get_marker() == "*"]
    assert stars == [(4.0, i * (H + pad) + 3.0) for i in (1, 2)]  # (y, x) = (3, 4), at each row's offset
    for art in [*ax.patches, *ax.lines]:  # clipped to their own cell, as in one axes per cell
        xy = ax.transData.inverted().transform(art.get_clip_box().get_points())
        x, y = np.ptp(xy, 0), xy.min(0) + 0.5
        assert np.allclose([x[0], x[1], y[0], y[1] % (H + pad)], [W, H, 0, 0])
    texts = _texts(fig)
    assert "s0 (cat)" in texts and not any(t.startswith("s1") for t in texts)
    flat = [t.replace("\n", "") for t in texts]
    assert "random(control)" in flat and "a_rather_long_method_name" in flat
    assert [t.get_text() for t in fig.legends[0].texts] == ["ground truth", "box_localisation box",
                                                          "pointing_game point"]
    assert fig._suptitle.get_text() == "m / d: localisation"


def test_localisation_without_boxes_of_the_target_class_is_none(setup):
    b, gals = setup
    assert G.localisation_figure(b, gals, ["s1", "s2"]) is None


@pytest.mark.parametrize(("h", "w", "zoom", "shrink"), [(H, W, 13, 1), (200, 256, 1, 2)])
def test_method_view_png_holds_the_mosaic_and_its_titles(tmp_path, h, w, zoom, shrink):
    rng = np.random.default_rng(2)
    gal = _gallery(rng, ["a/1", "b<2>", "c", "d"], signed=True, h=h, w=w)
    gal["maps"][1:] = np.abs(gal["maps"][1:])  # unsigned maps: their own colour scale (jet), ...
    gal["maps"][1, :2, :2] = [[-0.01, 0.5], [0.5, 0.5]]  # ... but one pixel makes map 1 signed, even shrunk
    path = G.method_gallery(gal, 3, tmp_path / "v_gallery")
    assert path == tmp_path / "v_gallery.png"
    assert G.view_titles(path) == [["a/1", "cat"], ["b<2>", "dog"], ["c", "boat"]]
    pix = np.asarray(Image.open(path).convert("RGB")).astype(float) / 255
    ch, cw = h // shrink, w // shrink
    pad = max(2, cw // 16)
    assert pix.shape == (zoom * (2 * ch + pad), zoom * (3 * cw + 2 * pad), 3)
    pix = pix[::zoom, ::zoom]

    def shrunk(a):  # naive block means
        return np.array([[a[y * shrink:(y + 1) * shrink, x * shrink:(x + 1) * shrink].mean((0, 1))
                          for x in range(cw)] for y in range(ch)])

    for k in range(3):
        img = shrunk(gal["images"][k] / 255.0)
        m = shrunk(np.nan_to_num(gal["maps"][k].astype(np.float32)))
        x0 = k * (cw + pad)
        np.testing.assert_allclose(pix[:ch, x0:x0 + cw], img, atol=0.51 / 255)
        want = blend(img, m, bool(np.nanmin(gal["maps"][k]) < 0))
        np.testing.assert_allclose(pix[ch + pad:, x0:x0 + cw], want, atol=0.51 / 255 + 1e-6)
    assert (pix[ch:ch + pad] == 1).all()


def test_page_shows_a_views_titles_under_its_image(tmp_path):
    rng = np.random.default_rng(3)
    path = G.method_gallery(_gallery(rng, ["x&1", "y"], signed=False), 6, tmp_path / "v_gallery")
    other = tmp_path / "v_curves.png"
    Image.new("RGB", (4, 4)).save(other)
    assert _samples(other) == ""  # not a gallery view
    cap = _samples(path)
    assert cap == "<figcaption class=samples><span>x&amp;1<br>cat</span><span>y<br>dog</span></figcaption>"
    b = SimpleNamespace(slug="s", labels=["m"], model="net", dataset="d")
    out = page.view(b, "m", ["m", "1"], ["method", "n"],
                    [("data:C", "curves", _samples(other)), ("data:G", "gallery", cap)], set())
    assert '<figure><img src="data:C" alt="m: curves"></figure>' in out
    assert f'<figure><img src="data:G" alt="m: gallery">{cap}</figure>' in out
