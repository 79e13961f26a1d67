"""The models scored (`PerplexityRow`) and the size-vs-perplexity plot, an SVG scatter written
by hand (no plotting dependency).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape as xml_escape

from stratoecho.charts import nice_ticks, tick_label

PLOT_FILE = "size_vs_perplexity.svg"


@dataclass(frozen=True)
class PerplexityRow:
    """One model scored on val.jsonl: e.g. ("base", "F32", ...), ("fine-tuned", "F32", ...),
    ("fine-tuned", "Q4_K_M", ...). `bytes` is the GGUF's size (None if unknown: not plotted)."""

    label: str
    quantization: str
    bytes: int | None
    val_perplexity: float
    drift: dict | None = None  # drift.Drift.figures(): the NLL increase over the F32 model, its interval


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    if n < 1e6:
        return f"{n / 1e3:.1f} kB"
    if n < 1e9:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:.2f} GB"


# ----------------------------------------------------------------------------- the plot
def size_vs_perplexity_svg(rows: Sequence[PerplexityRow], width: int = 520, height: int = 320) -> str:
    """A scatter of file size (MB, x) against val perplexity (y), each point labelled
    "label quantization". Rows without a size or with a non-finite perplexity are left out
    and counted in a note. The same rows always give the same bytes."""
    left, right, top, bottom = 64, 24, 40, 52
    pw, ph = width - left - right, height - top - bottom
    pts = [r for r in rows if r.bytes is not None and math.isfinite(r.val_perplexity)]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="13">size vs. val perplexity '
        "(lower is better)</text>",
    ]
    if not pts:
        out.append(f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle">no models to plot</text>')
        out.append("</svg>")
        return "\n".join(out) + "\n"
    xs = [r.bytes / 1e6 for r in pts]
    ys = [r.val_perplexity for r in pts]
    xt = nice_ticks(0.0, max(xs) * 1.05 or 1.0)
    ypad = (max(ys) - min(ys)) * 0.1 or abs(ys[0]) * 0.05 or 1.0
    yt = nice_ticks(min(ys) - ypad, max(ys) + ypad)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    # grid and ticks, then the axes over them
    for t in xt:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph + 4}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{tick_label(t, xt)}</text>')
    for t in yt:
        y = py(t)
        out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 7}" y="{y + 4:.1f}" text-anchor="end">{tick_label(t, yt)}</text>')
    out.append(f'<g stroke="#999" stroke-width="1">'
               f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}"/>'
               f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}"/></g>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 12}" text-anchor="middle">GGUF file size (MB)</text>')
    out.append(f'<text x="14" y="{top + ph / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2:.1f})">val perplexity</text>')
    # points, labels alternately above and below (sorted by size) so neighbours do not collide
    order = sorted(range(len(pts)), key=lambda i: (xs[i], ys[i]))
    for k, i in enumerate(order):
        x, y = px(xs[i]), py(ys[i])
        label = xml_escape(f"{pts[i].label} {pts[i].quantization}")
        anchor, dx = ("end", -7) if x > left + pw * 0.7 else ("start", 7)
        dy = -7 if k % 2 == 0 else 14
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#1f77b4"/>')
        out.append(f'<text x="{x + dx:.1f}" y="{y + dy:.1f}" text-anchor="{anchor}">{label}</text>')
    if len(pts) < len(rows):
        out.append(f'<text x="{left + pw}" y="{top - 6}" text-anchor="end" fill="#666">'
                   f"{len(rows) - len(pts)} model(s) without size or finite perplexity not shown</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
