"""closure.html: a squarified treemap of a bundle's inlined lines by vLLM file and definition, laid out here
(absolutely positioned divs), the why-path of each definition embedded as JSON and shown on click. One file,
no network, no external script or style."""

from __future__ import annotations

import colorsys
import hashlib
import html
import json
from pathlib import Path

W, H = 1160, 700


def _worst(row: list[float], w: float) -> float:
    s = sum(row)
    return max(max(w * w * r / (s * s), (s * s) / (w * w * r)) for r in row)


def squarify(values: list[float], x: float, y: float, w: float, h: float) -> list[tuple[float, float, float, float]]:
    """Bruls, Huizing and van Wijk's squarified layout of `values` (sorted descending, > 0) into the rectangle;
    returns one (x, y, w, h) per value, in order."""
    total = sum(values)
    if total <= 0 or not values:
        return [(x, y, 0.0, 0.0) for _ in values]
    scale = w * h / total
    areas = [v * scale for v in values]
    out: list[tuple[float, float, float, float]] = []
    i = 0
    while i < len(areas):
        side = min(w, h)
        row = [areas[i]]
        i += 1
        while i < len(areas) and _worst(row + [areas[i]], side) <= _worst(row, side):
            row.append(areas[i])
            i += 1
        s = sum(row)
        if w >= h:          # a column on the left
            cw = s / h if h else 0
            yy = y
            for a in row:
                rh = a / cw if cw else 0
                out.append((x, yy, cw, rh))
                yy += rh
            x, w = x + cw, w - cw
        else:               # a row on top
            rh = s / w if w else 0
            xx = x
            for a in row:
                cw = a / rh if rh else 0
                out.append((xx, y, cw, rh))
                xx += cw
            y, h = y + rh, h - rh
    return out


def _colour(file: str) -> str:
    top = "/".join(file.split("/")[:3])
    hue = int(hashlib.sha256(top.encode()).hexdigest()[:4], 16) / 65535
    shade = int(hashlib.sha256(file.encode()).hexdigest()[:2], 16) / 255
    r, g, b = colorsys.hls_to_rgb(hue, 0.55 + 0.15 * shade, 0.55)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def layout(closure) -> list[dict]:
    files: dict[str, list] = {}
    for b in closure.blocks:
        if b.nlines > 0:
            files.setdefault(b.file, []).append(b)
    fl = sorted(files.items(), key=lambda kv: (-sum(b.nlines for b in kv[1]), kv[0]))
    boxes = []
    for (f, bl), (x, y, w, h) in zip(fl, squarify([sum(b.nlines for b in v) for _, v in fl], 0, 0, W, H)):
        boxes.append({"t": "file", "file": f, "x": x, "y": y, "w": w, "h": h, "lines": sum(b.nlines for b in bl)})
        pad = 2 if w > 8 and h > 8 else 0
        head = 14 if h > 40 and w > 60 else 0
        bl = sorted(bl, key=lambda b: (-b.nlines, b.id))
        for b, (bx, by, bw, bh) in zip(bl, squarify([b.nlines for b in bl], x + pad, y + pad + head,
                                                    max(w - 2 * pad, 0), max(h - 2 * pad - head, 0))):
            boxes.append({"t": "def", "id": b.id, "name": b.name, "file": f, "line": b.line, "lines": b.nlines,
                          "section": b.section, "x": bx, "y": by, "w": bw, "h": bh, "c": _colour(f)})
    return boxes


PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>closure of {title}</title>
<style>
body{{font:13px sans-serif;margin:8px;background:#fff;color:#222}}
#map{{position:relative;width:{W}px;height:{H}px;border:1px solid #444;background:#333}}
.f{{position:absolute;box-sizing:border-box;border:1px solid #111;background:#555;overflow:hidden}}
.f span{{color:#fff;font-size:11px;padding:1px 3px;white-space:nowrap}}
.d{{position:absolute;box-sizing:border-box;border:1px solid rgba(0,0,0,.45);overflow:hidden;cursor:pointer;
font-size:10px;line-height:11px;padding:1px}}
.d:hover{{outline:2px solid #000;z-index:2}}
.d.sel{{outline:3px solid #e00;z-index:3}}
#why{{margin-top:8px;white-space:pre-wrap;font-family:monospace;min-height:4em;border:1px solid #ccc;padding:6px}}
</style></head><body>
<h3>{title}: {ndefs} definitions, {nlines} inlined lines in {nfiles} vLLM files (click a box: why is it here?)</h3>
<div id="map">{boxes}</div>
<div id="why">Click a definition.</div>
<script id="paths" type="application/json">{paths}</script>
<script>
var P = JSON.parse(document.getElementById('paths').textContent);
var sel = null;
function why(el) {{
  if (sel) sel.classList.remove('sel');
  sel = el; el.classList.add('sel');
  var id = el.getAttribute('data-id'), p = P.paths[id], out = [id + '  (' + el.getAttribute('data-lines') + ' lines)'];
  if (!p) {{ out.push('  no path from the roots in A1.graph.json edges'); }}
  else {{
    out.push('  ' + (p.length && p[0].from === 'invocation_example()' ? 'invocation_example()' : P.symbol));
    for (var i = 0; i < p.length; i++) {{
      var e = p[i];
      out.push('  -> ' + e.to_name + '  [' + e.kind + ' at ' + e.file + ':' + e.line + ']');
    }}
  }}
  document.getElementById('why').textContent = out.join('\\n');
}}
document.getElementById('map').addEventListener('click', function (ev) {{
  var el = ev.target.closest('.d'); if (el) why(el);
}});
// closure.html#why=<definition id> opens with that definition selected (a link to share)
if (location.hash.indexOf('#why=') === 0) {{
  var want = decodeURIComponent(location.hash.slice(5));
  var boxes = document.querySelectorAll('.d');
  for (var i = 0; i < boxes.length; i++) if (boxes[i].getAttribute('data-id') === want) why(boxes[i]);
}}
</script>
</body></html>
"""


def write_html(closure, path: Path) -> Path:
    boxes = layout(closure)
    parts = []
    for b in boxes:
        style = f"left:{b['x']:.1f}px;top:{b['y']:.1f}px;width:{b['w']:.1f}px;height:{b['h']:.1f}px"
        if b["t"] == "file":
            parts.append(f'<div class="f" style="{style}" title="{html.escape(b["file"])}: {b["lines"]} lines">'
                         f'<span>{html.escape(b["file"].replace("vllm/", "", 1))}</span></div>')
        else:
            label = html.escape(b["name"]) if b["w"] > 30 and b["h"] > 12 else ""
            parts.append(f'<div class="d" style="{style};background:{b["c"]}" data-id="{html.escape(b["id"])}" '
                         f'data-lines="{b["lines"]}" title="{html.escape(b["name"])} ({html.escape(b["file"])}:'
                         f'{b["line"]}, {b["lines"]} lines)">{label}</div>')
    paths = closure.all_paths()
    slim = {k: [{x: e.get(x) for x in ("from", "to_name", "kind", "file", "line")} for e in v]
            for k, v in paths.items()}
    data = json.dumps({"symbol": closure.graph.get("symbol"), "paths": slim}, sort_keys=True).replace("</", "<\\/")
    files = {b.file for b in closure.blocks}
    text = PAGE.format(title=html.escape(str(closure.graph.get("symbol"))), W=W, H=H, boxes="\n".join(parts),
                       paths=data, ndefs=len(closure.blocks), nlines=sum(b.nlines for b in closure.blocks),
                       nfiles=len(files))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
