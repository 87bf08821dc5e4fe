"""Line charts as SVG, Python standard library only (the style of scripts/plot-metrics).

    chart(title, xlabel, ylabel, series, xlog=True, xfmt=str) -> list of SVG elements for one panel
    write(path, panels) writes panels side by side.

A series is (name, [(x, y), ...], hollow_xs): points whose x is in hollow_xs are drawn as open circles with a
dashed segment into them (used for oversubscribed runs, whose figures are not speed).
"""
import math
from xml.sax.saxutils import escape

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 520, 340, 70, 16, 36, 48
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def ticks(lo, hi, n=5):
    """About n round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    out, t = [], math.floor(lo / step) * step
    while t <= hi + step * 1e-9:
        out.append(round(t, 12))
        t += step
    return out


def chart(x0, title, xlabel, ylabel, series, xlog=True, xfmt=lambda v: f"{v:g}", note=None):
    """One panel at horizontal offset x0; x on a log2 scale when xlog (ticks at the data's x values)."""
    pts = [p for _, ps, _ in series for p in ps]
    if not pts:
        return [f'<text x="{x0 + W / 2}" y="{H / 2}" text-anchor="middle" font-size="13">{escape(title)}: no data</text>']
    xs = sorted({x for x, _ in pts})
    fx = (lambda v: math.log2(v)) if xlog else (lambda v: v)
    xlo, xhi = fx(xs[0]), fx(xs[-1])
    if xhi == xlo:
        xlo, xhi = xlo - 1, xhi + 1
    yt = ticks(0, max(y for _, y in pts))
    ylo, yhi = 0, yt[-1]
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(v):
        return x0 + PAD_L + pw * (fx(v) - xlo) / (xhi - xlo)

    def sy(v):
        return PAD_T + ph * (1 - (v - ylo) / (yhi - ylo))

    out = [f'<text x="{x0 + PAD_L + pw / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
           f'<rect x="{x0 + PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>']
    for t in yt:
        out.append(f'<line x1="{x0 + PAD_L}" x2="{x0 + PAD_L + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 + PAD_L - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" font-size="11">{t:g}</text>')
    step = max(1, len(xs) // 8)
    for v in xs[::step]:
        out.append(f'<text x="{sx(v):.1f}" y="{PAD_T + ph + 16}" text-anchor="middle" font-size="11">{escape(xfmt(v))}</text>')
    out.append(f'<text x="{x0 + PAD_L + pw / 2}" y="{H - 10}" text-anchor="middle" font-size="12">{escape(xlabel)}</text>')
    out.append(f'<text x="{x0 + 14}" y="{PAD_T + ph / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 {x0 + 14} {PAD_T + ph / 2})">{escape(ylabel)}</text>')
    ly = PAD_T + 14
    for i, (name, ps, hollow) in enumerate(series):
        if not ps:
            continue
        c = PALETTE[i % len(PALETTE)]
        ps = sorted(ps)
        solid = [p for p in ps if p[0] not in hollow]
        if len(solid) > 1:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in solid)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{c}" stroke-width="1.8"/>')
        dashed = ([solid[-1]] if solid else []) + [p for p in ps if p[0] in hollow]
        if len(dashed) > 1:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in dashed)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{c}" stroke-width="1.2" stroke-dasharray="4 3"/>')
        for x, y in ps:
            fill = "white" if x in hollow else c
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.6" fill="{fill}" stroke="{c}"/>')
        out.append(f'<text x="{x0 + PAD_L + 8}" y="{ly}" font-size="11" fill="{c}">{escape(name)}</text>')
        ly += 14
    if note:
        out.append(f'<text x="{x0 + PAD_L + pw - 6}" y="{PAD_T + ph - 8}" text-anchor="end" font-size="10" fill="#555">{escape(note)}</text>')
    return out


def write(path, panels):
    width = W * len(panels)
    body = "\n".join(e for p in panels for e in p)
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" viewBox="0 0 {width} {H}" '
           f'font-family="sans-serif">\n<rect width="{width}" height="{H}" fill="white"/>\n{body}\n</svg>\n')
    with open(path, "w") as f:
        f.write(svg)
