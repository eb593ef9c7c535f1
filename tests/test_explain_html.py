"""closure.html in a real browser: Debian's headless chromium (installed by tools/setup-browser.sh, which
./run-tests calls) renders the treemap; the screenshot has the boxes' colours, the DOM has the boxes and
the embedded why-paths. Skipped, naming the reason, only where chromium is absent."""

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from bundler_lib.explain import Closure
from bundler_lib.explain_html import layout, write_html
from tests.test_closure_helpers import build_all
from tests.test_explain import write_tree

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run tools/setup-browser.sh "
                                                            "(./run-tests does) to check closure.html in a browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,800"]


def read_png(path: Path):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB/RGBA non-interlaced PNG: zlib and struct only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        prev = line
    return w, h, rows


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tree = write_tree(tmp_path_factory.mktemp("tree"))
    out = tmp_path_factory.mktemp("art")
    build_all(tree, out, "Target")
    c = Closure(out, tree=tree)
    html = write_html(c, out / "closure.html")
    return c, html


def _chromium(tmp_path, *args):
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=180)


@needs_chromium
def test_screenshot_shows_the_treemap_boxes(page, tmp_path):
    c, html = page
    png = tmp_path / "shot.png"
    proc = _chromium(tmp_path, f"--screenshot={png}", html.as_uri())
    assert png.exists(), proc.stderr[-2000:]
    w, h, rows = read_png(png)
    assert (w, h) == (1200, 800)
    # the map's area (8px margin, a heading above it): the definitions' own colours, not a blank page
    box_colours = {tuple(int(b["c"][i:i + 2], 16) for i in (1, 3, 5)) for b in layout(c) if b["t"] == "def"}
    seen: dict[tuple, int] = {}
    for row in rows[60:760]:
        for px in row[10:1190]:
            seen[px] = seen.get(px, 0) + 1
    near = sum(n for px, n in seen.items()
               if any(sum(abs(p - q) for p, q in zip(px, col)) <= 6 for col in box_colours))
    non_white = sum(n for px, n in seen.items() if px != (255, 255, 255))
    total = sum(seen.values())
    assert len([col for col in box_colours
                if any(sum(abs(p - q) for p, q in zip(px, col)) <= 6 for px in seen)]) == len(box_colours)
    assert near / total > 0.5, (near, total)
    assert non_white / total > 0.8


@needs_chromium
def test_dom_has_the_boxes_and_the_paths(page, tmp_path):
    c, html = page
    proc = _chromium(tmp_path, "--dump-dom", html.as_uri())
    dom = proc.stdout
    assert dom.count('class="d"') == len(c.blocks) and dom.count('class="f"') == len({b.file for b in c.blocks})
    assert 'data-id="vllm/helpers.py::scale"' in dom and '"to_name": "scale"' in dom


@needs_chromium
def test_a_selected_box_shows_its_why_path(page, tmp_path):
    """The click handler's result, through the #why= link: the path from the symbol, edge by edge."""
    c, html = page
    proc = _chromium(tmp_path, "--dump-dom", html.as_uri() + "#why=vllm/helpers.py::scale")
    why = proc.stdout.split('<div id="why">', 1)[1].split("</div>", 1)[0]
    assert why.startswith("vllm/helpers.py::scale  (2 lines)\n  Target\n  -&gt; scale  [call at vllm/layer.py:22]"), why
    assert 'class="d sel"' in proc.stdout
