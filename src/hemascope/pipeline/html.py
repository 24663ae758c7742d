"""The run's HTML report: one self-contained page (inline SVG plots, no scripts, no network)."""

from __future__ import annotations

import html
import json
from typing import Any, Sequence

from hemascope.io.geojson import class_color
from hemascope.pipeline.records import OTHER_KINDS

MAX_ROWS = 300


def _e(x: Any) -> str:
    return html.escape(str(x))


def bar_chart(values: dict[str, float], *, width: int = 520, unit: str = "") -> str:
    """Horizontal bars, one per key, as inline SVG."""
    if not values:
        return "<p><em>nothing to plot</em></p>"
    top = max(values.values()) or 1
    row = 22
    h = row * len(values) + 10
    parts = [f'<svg width="{width}" height="{h}" role="img">']
    for i, (k, v) in enumerate(values.items()):
        w = (width - 220) * v / top
        r, g, b = class_color(k)
        y = 5 + i * row
        parts.append(f'<text x="0" y="{y + 15}" font-size="13">{_e(k)}</text>'
                     f'<rect x="150" y="{y + 3}" width="{w:.1f}" height="15" fill="rgb({r},{g},{b})"/>'
                     f'<text x="{155 + w:.1f}" y="{y + 15}" font-size="12">{v:g}{unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: Sequence[float], *, bins: int = 10, width: int = 520, height: int = 140) -> str:
    """Vertical histogram of values in 0-1 as inline SVG."""
    if not values:
        return "<p><em>no white cells</em></p>"
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v * bins)))] += 1
    top = max(counts)
    bw = (width - 40) / bins
    parts = [f'<svg width="{width}" height="{height + 30}" role="img">']
    for i, c in enumerate(counts):
        h = (height - 10) * c / top
        parts.append(f'<rect x="{30 + i * bw:.1f}" y="{height - h:.1f}" width="{bw - 2:.1f}" '
                     f'height="{h:.1f}" fill="#5b7db1"><title>{c}</title></rect>'
                     f'<text x="{30 + i * bw:.1f}" y="{height + 15}" font-size="11">{i / bins:.1f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_bar(percent: dict[str, float], *, width: int = 300) -> str:
    x, parts = 0.0, [f'<svg width="{width}" height="14">']
    for k, v in percent.items():
        w = width * v / 100
        r, g, b = class_color(k)
        parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="14" fill="rgb({r},{g},{b})">'
                     f'<title>{_e(k)} {v:.1f}%</title></rect>')
        x += w
    return "".join(parts) + "</svg>"


def render_report(result, manifest: dict[str, Any], header: Sequence[str],
                  rows: Sequence[Sequence[Any]]) -> str:
    cells = result.cells
    white = [c for c in cells if c.kind not in OTHER_KINDS]
    overall = rows[-1] if rows else []
    classes = [h[:-6] for h in header if h.endswith("_count")]
    n_cls = len(classes)
    counts = {c: overall[1 + i] for i, c in enumerate(classes)} if overall else {}
    table = ["<table><tr><th>class</th><th>count</th><th>% of white cells</th></tr>"]
    for i, c in enumerate(classes):
        table.append(f"<tr><td>{_e(c)}</td><td>{overall[1 + i]}</td><td>{overall[1 + n_cls + i]}</td></tr>")
    totals = overall[1 + 2 * n_cls:] if overall else [0, 0, 0]
    table.append(f"<tr><th>white cells</th><td>{totals[0]}</td><td></td></tr>"
                 f"<tr><th>red cells</th><td>{totals[1]}</td><td></td></tr>"
                 f"<tr><th>platelets</th><td>{totals[2]}</td><td></td></tr></table>")
    per_image = ["<table><tr><th>image</th><th>white</th><th>red</th><th>platelets</th>"
                 "<th>differential</th></tr>"]
    for row in rows[:-1][:MAX_ROWS]:
        pct = {c: float(row[1 + n_cls + i] or 0) for i, c in enumerate(classes)}
        per_image.append(f"<tr><td>{_e(row[0])}</td><td>{row[-3]}</td><td>{row[-2]}</td>"
                         f"<td>{row[-1]}</td><td>{stacked_bar(pct)}</td></tr>")
    per_image.append("</table>")
    if len(rows) - 1 > MAX_ROWS:
        per_image.append(f"<p>{len(rows) - 1 - MAX_ROWS} more images in differential.csv</p>")
    gallery = []
    by_key = {r.file: r.key for r in result.images}
    flagged = [(r, c) for r in result.images for c in r.cells if c.review]
    for r, c in flagged[:200]:
        second = f"{c.top2[1][0]} {float(c.top2[1][1]):.2f}" if c.top2 and len(c.top2) > 1 else ""
        p = c.probability if c.probability is not None else c.score
        gallery.append(f'<figure><img src="review/{_e(by_key[r.file])}_{c.id}.png" width="96" '
                       f'height="96" alt=""><figcaption>{_e(c.label)} {p:.2f}<br>'
                       f'2nd {_e(second)}<br><small>{_e(r.key)} #{c.id}</small></figcaption></figure>')
    confidences = [c.probability for c in white if c.probability is not None]
    errors = "".join(f"<li>{_e(f)}: {_e(why)}</li>" for f, why in sorted(result.errors.items()))
    warned = "".join(f"<li>{_e(r.file)}: {_e('; '.join(r.warnings))}</li>"
                     for r in result.images if r.warnings)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hemascope report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}figure{{display:inline-block;
margin:4px;font-size:11px;width:110px}}pre{{background:#f5f5f5;padding:1em;overflow:auto}}</style>
</head><body>
<h1>hemascope differential</h1>
<p>{len(result.images)} images ({result.resumed} from an earlier run), {len(result.errors)} unreadable,
{len(cells)} objects, {len(white)} white cells, {len(flagged)} flagged for review.</p>
<h2>Counts</h2>{''.join(table)}
<h2>White-cell classes</h2>{bar_chart(counts)}
<h2>Classifier confidence of white cells</h2>{histogram(confidences)}
<h2>Per image</h2>{''.join(per_image)}
<h2>Cells to review (confidence below {manifest['options']['review_below']}, weak detection, or an image the models may not read)</h2>
{''.join(gallery) or '<p>none</p>'}
<h2>Images the models may not read</h2>{f'<ul>{warned}</ul>' if warned else '<p>none</p>'}
<h2>Unreadable files</h2>{f'<ul>{errors}</ul>' if errors else '<p>none</p>'}
<h2>Configuration</h2><pre>{_e(json.dumps(manifest, indent=2))}</pre>
</body></html>
"""
