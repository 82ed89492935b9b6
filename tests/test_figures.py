"""The run's heatmap grid (``pixels.heatmap_grid``): every pixel of the cells is the
image or ``blend`` of its map, titles stay in their column, small inputs are enlarged."""

import numpy as np
import pytest

from faithbench.pixels import blend, heatmap_grid


def _cells(img, n, h, w):
    """(top row, bottom row, factor, pad) read back from the picture's geometry."""
    a = np.asarray(img).astype(np.int64)
    k = max(1, -(-128 // max(h, w)))
    ch, cw = h * k, w * k
    pad = (a.shape[1] - n * cw) // (n - 1)
    top = a.shape[0] - 2 * ch - pad
    tops = [a[top:top + ch, i * (cw + pad):i * (cw + pad) + cw] for i in range(n)]
    bottoms = [a[top + ch + pad:, i * (cw + pad):i * (cw + pad) + cw] for i in range(n)]
    return a, tops, bottoms, k, pad, top


@pytest.mark.parametrize("h,w", [(224, 160), (30, 20)])
def test_cells_hold_the_images_and_their_blended_maps_pixel_for_pixel(h, w):
    rng = np.random.default_rng(0)
    n = 3
    images = rng.random((n, h, w, 3))
    maps = rng.normal(size=(n, h, w)).astype(np.float32)
    maps[1] = np.abs(maps[1])  # unsigned: jet; the others signed: bwr
    maps[2, :4] = np.nan  # shown as 0
    img = heatmap_grid(images, maps, ["a", "b", "c"], "grad_cam")
    a, tops, bottoms, k, pad, top = _cells(img, n, h, w)
    assert a.shape[1] == n * w * k + (n - 1) * pad and top > 0
    for i in range(n):
        big = lambda x: x.repeat(k, 0).repeat(k, 1)  # noqa: E731
        np.testing.assert_array_equal(tops[i], np.round(big(images[i]) * 255))
        np.testing.assert_array_equal(bottoms[i], np.round(np.clip(big(blend(images[i], maps[i])), 0, 1) * 255))
    assert k == (1 if h == 224 else 5)
    # the gaps between cells stay white
    assert (a[top:, w * k:w * k + pad] == 255).all()


def test_long_titles_are_cut_to_their_column_and_every_line_is_drawn():
    rng = np.random.default_rng(1)
    n, h, w = 4, 64, 64
    titles = ["x" * 200 + "\nsecond line"] * n
    img = heatmap_grid(rng.random((n, h, w, 3)), rng.random((n, h, w)), titles, "m")
    a, _, _, k, pad, top = _cells(img, n, h, w)
    cw = w * k
    band = a[:top]
    inked = (band < 128).any(axis=(1, 2))  # rows with dark text pixels
    starts = np.flatnonzero(np.diff(inked.astype(int)) == 1)
    assert len(starts) >= 3  # the method's name and both lines of each title
    titles_band = band[starts[1]:]  # below the method's name
    for i in range(1, n):  # nothing drawn in the gaps between columns
        assert (titles_band[:, i * (cw + pad) - pad:i * (cw + pad)] == 255).all()
    short = heatmap_grid(rng.random((n, h, w, 3)), rng.random((n, h, w)), ["a"] * n, "m")
    assert np.asarray(short).shape[0] < a.shape[0]  # one title line: a lower band


def test_saved_pdfs_embed_truetype_quietly(tmp_path, caplog):
    """Figures are drawn in ``style()`` and saved after it: their PDFs still embed TrueType
    fonts (Type 42, which venues accept; matplotlib's default is Type 3), and fontTools'
    subsetting does not flood a command's INFO logging."""
    import matplotlib.pyplot as plt

    from faithbench.figures import save, style

    with style():
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, 1], label="a method")
        ax.set_title("a title")
    with caplog.at_level("INFO"):  # as under the report's logging
        _, pdf = save(fig, tmp_path / "f")
    assert not [r for r in caplog.records if r.name.startswith("fontTools")]
    body = pdf.read_bytes()
    assert b"/FontFile2" in body and b"/Type3" not in body
    # the embedded font holds the glyphs drawn, without the layout tables no reader uses
    import io
    import re
    import zlib

    from fontTools.subset import Options
    from fontTools.ttLib import TTFont

    from faithbench.figures import LAYOUT_TABLES

    ref = int(re.search(rb"/FontFile2 (\d+) 0 R", body).group(1))
    stream = re.search(rb"\n%d 0 obj\s*<<(.*?)>>\s*stream\r?\n" % ref, body, re.S)
    font = TTFont(io.BytesIO(zlib.decompressobj().decompress(body[stream.end():])))
    assert not set(LAYOUT_TABLES) & set(font.keys())
    assert {ord(c) for c in "atitle0.51"} <= set(font.getBestCmap())  # the title and tick labels
    assert not set(LAYOUT_TABLES) & set(Options._drop_tables_default)  # restored after saving


def _write_pid(path):
    import os

    path.write_text(str(os.getpid()))


def _figure(title):
    import matplotlib.pyplot as plt

    from faithbench.figures import style

    with style():
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1, 3], [0, 2, 1])
        ax.imshow(np.arange(64.0).reshape(8, 8), extent=(0, 1, 0, 1))
        ax.set_title(title)
    return fig


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="fork: Linux only")
def test_background_writes_the_same_files_from_worker_processes(tmp_path):
    """Inside ``background()`` each figure (or the call that draws it) is pickled to a
    worker process, which writes it while the next is drawn: the PNGs are byte for byte
    those written here, every file exists when the block ends, the figures are closed
    here at once."""
    import os

    import matplotlib.pyplot as plt

    from faithbench import figures

    for i in range(5):
        figures.save(_figure(f"figure {i}"), tmp_path / "here" / f"f{i}", shrink_images=True)
    open_before = plt.get_fignums()
    with figures.background(2):
        assert figures._POOL is not None
        for i in range(5):
            figures.save(_figure(f"figure {i}"), tmp_path / "there" / f"f{i}", shrink_images=True)
            figures.later([tmp_path / f"pid{i}"], _write_pid, tmp_path / f"pid{i}")
        figures.draw_and_save(_figure, ("figure 0",), tmp_path / "drawn", shrink_images=True)
        assert plt.get_fignums() == open_before
    for i in range(5):
        assert (tmp_path / "there" / f"f{i}.png").read_bytes() == (tmp_path / "here" / f"f{i}.png").read_bytes()
        assert (tmp_path / "there" / f"f{i}.pdf").read_bytes()[:5] == b"%PDF-"
        assert int((tmp_path / f"pid{i}").read_text()) != os.getpid()
    assert (tmp_path / "drawn.png").read_bytes() == (tmp_path / "here" / "f0.png").read_bytes()
    assert figures._POOL is None


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="fork: Linux only")
def test_background_names_the_figures_it_failed_to_write_and_writes_the_others(tmp_path):
    import matplotlib.pyplot as plt

    from faithbench import figures

    bad = plt.figure()
    bad.suptitle(r"$\frac{$")  # mathtext that fails when drawn, not when set
    with pytest.raises(RuntimeError, match=r"writing figures failed: .*bad\.png.*: ValueError"):
        with figures.background(2):
            figures.save(_figure("good"), tmp_path / "good")
            figures.save(bad, tmp_path / "bad")
            figures.save(_figure("also good"), tmp_path / "also")
    assert (tmp_path / "good.pdf").exists() and (tmp_path / "also.pdf").exists()
    assert figures._POOL is None


def test_background_with_one_worker_writes_in_this_process(tmp_path):
    from faithbench import figures

    with figures.background(1):
        assert figures._POOL is None
        figures.save(_figure("x"), tmp_path / "x")
        assert (tmp_path / "x.png").exists()  # written before save returned


def test_images_shrunk_for_a_file_are_the_mean_of_the_pixels_each_covers(tmp_path):
    """A 64 x 64 RGB mosaic shown in 32 x 32 pixels of the PNG: each pixel is the mean
    of a 2 x 2 block (matplotlib's nearest resampling would pick one pixel of it); the
    figure holds its own image, extent and interpolation again afterwards."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from faithbench import figures

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    fig = plt.figure(figsize=(1, 1), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    im = ax.imshow(img, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    extent = im.get_extent()
    paths = figures.save(fig, tmp_path / "f", dpi=32, shrink_images=True, close=False)
    got = np.asarray(Image.open(paths[0]).convert("RGB")).astype(float)
    blocks = img.reshape(32, 2, 32, 2, 3).astype(float).mean((1, 3))
    assert got.shape == (32, 32, 3)
    assert np.abs(got - blocks).max() <= 1  # rounding
    assert np.abs(got - img[::2, ::2]).max() > 50  # not one pixel of each block
    assert np.array_equal(im.get_array(), img) and im.get_extent() == extent
    assert im.get_interpolation() == "nearest"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    figures.save(fig, tmp_path / "g", dpi=200, pdf=False, shrink_images=True)  # enlarged: as it is
    big = np.asarray(Image.open(tmp_path / "g.png").convert("RGB"))
    assert big.shape == (200, 200, 3) and np.array_equal(big[0, 0], img[0, 0])


def test_images_shrunk_keep_their_place_the_axes_limits_and_come_back(tmp_path):
    """An inverted axis still shows the image upside down; an axes autoscaled to other
    artists keeps its limits; the image comes back when the block raises."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from faithbench import figures

    img = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    fig = plt.figure(figsize=(1, 1), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    im = ax.imshow(img, interpolation="nearest", aspect="auto")
    ax.invert_yaxis()
    ax.set_axis_off()
    limits = ax.get_xlim(), ax.get_ylim()
    path = figures.save(fig, tmp_path / "flipped", dpi=32, pdf=False, shrink_images=True, close=False)[0]
    got = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert np.abs(got - img[::-1].reshape(32, 2, 32, 2, 3).mean((1, 3))).max() <= 1
    assert (ax.get_xlim(), ax.get_ylim()) == limits
    with pytest.raises(RuntimeError), figures.images_at(fig, 32):
        assert im.get_array().shape == (32, 32, 3)
        raise RuntimeError
    assert np.array_equal(im.get_array(), img) and (ax.get_xlim(), ax.get_ylim()) == limits

    fig, ax = plt.subplots(figsize=(1, 1), dpi=100)
    ax.imshow(img, aspect="auto")
    ax.plot([0, 130], [0, 130])  # autoscaled beyond the image
    ax.autoscale()
    limits = ax.get_xlim(), ax.get_ylim()
    figures.save(fig, tmp_path / "wider", dpi=32, pdf=False, shrink_images=True, close=False)
    assert (ax.get_xlim(), ax.get_ylim()) == limits
    plt.close("all")
