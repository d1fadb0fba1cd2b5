"""Heatmaps of pairwise numbers drawn as SVG text, once, when a leaderboard
is fitted (tasks.arena), so a page only pastes them in. Colours are classes
over the site's CSS variables (static/css/app.css: heatmap-*), so they read
in dark mode too, and no style attribute is needed (the CSP allows none)."""

from html import escape

CELL = 34
LABEL = 150
SLANT_ROOM = 90  # right of the last column, for its slanted label


def _short(name):
    return name if len(name) <= 22 else name[:21] + "…"


def svg(names, values, kind, title):
    """One heatmap: `values[i][j]` of row i against column j (None: no
    votes). `kind` "win-rate" (0..1, green above a half, red below) or
    "battles" (counts, one colour, darker for more)."""
    n = len(names)
    size = LABEL + n * CELL
    width = size + SLANT_ROOM
    most = max([max((v or 0) for v in row) for row in values] + [1])
    slug = escape(kind)
    parts = [
        f'<svg viewBox="0 0 {width} {size}" width="{width}" height="{size}" role="img" '
        f'aria-labelledby="heatmap-{slug}-title" class="heatmap-svg">',
        f'<title id="heatmap-{slug}-title">{escape(title)}</title>',
    ]
    for i, name in enumerate(names):
        middle = LABEL + i * CELL + CELL // 2
        label = escape(_short(name))
        parts.append(
            f'<text x="{LABEL - 4}" y="{middle}" text-anchor="end" dominant-baseline="middle" '
            f'class="heatmap-label">{label}</text>'
            f'<text transform="translate({middle} {LABEL - 4}) rotate(-60)" class="heatmap-label">{label}</text>'
        )
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if i == j or not value and (value is None or kind == "battles"):
                continue
            if kind == "win-rate":
                strength, text = abs(value - 0.5) * 2, f"{round(value * 100)}"
                colour, said = ("win" if value >= 0.5 else "loss"), f"{text}%"
            else:
                strength, text, colour, said = value / most, str(value), "count", f"{value} votes"
            x, y = LABEL + j * CELL, LABEL + i * CELL
            # Light enough that the text on it stays readable in both schemes.
            opacity = round(0.1 + 0.5 * strength, 3)
            parts.append(
                f"<g><title>{escape(names[i])} vs {escape(names[j])}: {said}</title>"
                f'<rect x="{x}" y="{y}" width="{CELL - 2}" height="{CELL - 2}" rx="3" '
                f'class="heatmap-{colour}" fill-opacity="{opacity}"></rect>'
                f'<text x="{x + 16}" y="{y + 17}" text-anchor="middle" dominant-baseline="middle" '
                f'class="heatmap-value">{text}</text></g>'
            )
    parts.append("</svg>")
    return "".join(parts)
