"""``report.html``: one self-contained page a person can read (images embedded, charts as inline SVG).

For each person: a face thumbnail, the share of each emotion (how often it was the top label), a timeline
of every emotion's probability, and the strongest moment of each emotion with its frame. A video without
a face says so plainly, as does an analysis that was interrupted or a file that ended early.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

from app.core.analysis.summary import MOMENT_MIN, PersonStats
from app.core.labels import colour_for

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1000px;
color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin:0}
.meta{color:#666;font-size:13px} .note{background:#fff4d6;border-left:4px solid #e0a400;padding:8px 12px;
margin:10px 0}
.person{border:1px solid #ddd;border-radius:8px;padding:16px;margin:18px 0}
.head{display:flex;gap:16px;align-items:center} .head img{border-radius:6px;width:112px;height:112px}
.bars{display:grid;grid-template-columns:80px 1fr 52px;gap:3px 8px;align-items:center;font-size:13px;
margin:12px 0}
.bar{height:12px;border-radius:3px} .track{background:#f0f0f0;border-radius:3px}
.moments{display:flex;flex-wrap:wrap;gap:12px} .moment{font-size:12px;width:220px}
.moment img{width:220px;border-radius:4px;display:block} .legend span{margin-right:12px;font-size:12px}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
"""


def _hex(label: str) -> str:
    r, g, b = colour_for(label)
    return f"#{r:02x}{g:02x}{b:02x}"


def _img(data: bytes, alt: str) -> str:
    if not data:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/jpeg;base64,{base64.b64encode(data).decode()}">'


def _clock(seconds: float) -> str:
    minutes, sec = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes)}:{sec:05.2f}"


def timeline_svg(points: Sequence[tuple[float, int, Any]], labels: Sequence[str], duration_s: float,
                 width: int = 940, height: int = 170) -> str:
    """Inline SVG: each emotion's probability over time, one line per emotion, with a time axis."""
    left, right, top, bottom = 34, 8, 8, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max(duration_s, max((p[0] for p in points), default=0.0), 1e-3)

    def x_of(t: float) -> float:
        return left + plot_w * t / span

    def y_of(p: float) -> float:
        return top + plot_h * (1.0 - p)

    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
              f'viewBox="0 0 {width} {height}" role="img" aria-label="emotion timeline">'),
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ddd"/>']
    for p in (0.5, 1.0):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y_of(p):.1f}" y2="{y_of(p):.1f}" '
                     f'stroke="#e4e4e4"/><text x="{left - 4}" y="{y_of(p) + 4:.1f}" font-size="10" '
                     f'text-anchor="end" fill="#888">{p:.0%}</text>')
    for i in range(6):
        t = span * i / 5
        parts.append(f'<text x="{x_of(t):.1f}" y="{height - 6}" font-size="10" text-anchor="middle" '
                     f'fill="#888">{_clock(t)}</text>')
    for li, label in enumerate(labels):
        coords = " ".join(f"{x_of(t):.1f},{y_of(float(probs[li])):.1f}" for t, _, probs in points)
        if len(points) == 1:  # a single point is drawn as a dot
            t, _, probs = points[0]
            parts.append(f'<circle cx="{x_of(t):.1f}" cy="{y_of(float(probs[li])):.1f}" r="2.5" '
                         f'fill="{_hex(label)}"/>')
        elif coords:
            parts.append(f'<polyline fill="none" stroke="{_hex(label)}" stroke-width="1.4" '
                         f'points="{coords}"><title>{html.escape(label)}</title></polyline>')
    parts.append("</svg>")
    return "".join(parts)


def _person_html(stats: PersonStats, duration_s: float) -> str:
    share = stats.share()
    rows = []
    for label in sorted(stats.labels, key=lambda k: -share[k]):
        value = share[label]
        rows.append(f'<div>{html.escape(label)}</div><div class="track"><div class="bar" style="width:'
                    f'{value * 100:.1f}%;background:{_hex(label)}"></div></div><div>{value:.1%}</div>')
    moments = []
    for label in stats.labels:
        m = stats.moments.get(label)
        if m is None:
            continue
        if m.score >= MOMENT_MIN and m.thumbnail:
            moments.append(f'<div class="moment">{_img(m.thumbnail, f"{label} at {_clock(m.time_s)}")}'
                           f'<b style="color:{_hex(label)}">{html.escape(label)}</b> {m.score:.0%} at '
                           f'{_clock(m.time_s)} (frame {m.frame})</div>')
    weak = [f"{label} (at most {stats.moments[label].score:.0%})" for label in stats.labels
            if label in stats.moments and (stats.moments[label].score < MOMENT_MIN
                                           or not stats.moments[label].thumbnail)]
    top = max(share, key=share.__getitem__)
    assert stats.timeline is not None
    legend = "".join(f'<span><i class="sw" style="background:{_hex(k)}"></i>{html.escape(k)}</span>'
                     for k in stats.labels)
    return (f'<section class="person" id="person-{stats.number}"><div class="head">'
            f'{_img(stats.thumbnail, f"person {stats.number}")}<div><h2>Person {stats.number}</h2>'
            f'<div class="meta">seen in {stats.frames} analysed frames, from {_clock(stats.first_s)} to '
            f'{_clock(stats.last_s)}; mostly <b>{html.escape(top)}</b> ({share[top]:.0%} of the time)'
            f'</div></div></div><div class="bars">{"".join(rows)}</div>'
            f'<div class="legend">{legend}</div>{timeline_svg(stats.timeline.points(), stats.labels, duration_s)}'
            f'<h3>Strongest moment of each emotion</h3><div class="moments">{"".join(moments) or "none"}</div>'
            + (f'<p class="meta">Never clearly shown: {html.escape(", ".join(weak))}.</p>' if weak else "")
            + "</section>")


def render_report(summary: dict[str, Any], people: Sequence[PersonStats]) -> str:
    """The whole page for one analysed video (``summary`` as written to summary.json)."""
    title = f"Expressions in {summary['video_name']}"
    tta = summary.get("tta")
    tta_text = f", {tta} TTA" if tta not in (None, False, "none") else ""
    duration = float(summary.get("duration_s") or 0.0)
    meta = (f"{summary['frames_analysed']} frames analysed"
            + (f" (every {summary['every']}th)" if summary.get("every", 1) > 1 else "")
            + f", {_clock(duration)} long, {summary['width']}×{summary['height']}; model "
            f"{html.escape(summary.get('model_name', ''))}, detector {html.escape(summary.get('detector', ''))}"
            + tta_text + f"; {len(people)} "
            + ("person" if len(people) == 1 else "people") + ".")
    notes = [f'<div class="note">{html.escape(n)}</div>' for n in summary.get("notes", [])]
    if not people:
        notes.append(f'<div class="note"><b>No face was found in this video</b> '
                     f'({summary["frames_analysed"]} frames analysed). Faces smaller than about '
                     f'{summary.get("min_face_px", 48)} pixels, or turned far from the camera, are not '
                     'detected; try --detector hog or --detect-size 0.</div>')
    body = "".join(_person_html(p, duration) for p in people)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1><div class="meta">{meta}</div>'
            f'{"".join(notes)}{body}<p class="meta">Made by FER Studio; per-frame data in faces.csv, '
            f'numbers in summary.json.</p></body></html>')
