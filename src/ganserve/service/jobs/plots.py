"""history.png: a job's loss and metric curves, drawn server-side with matplotlib (Agg).

Uses the object-oriented API (Figure + FigureCanvasAgg), never pyplot's global state, so
concurrent requests in the thread pool do not share a figure.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Panels, in order: which series go together on one set of axes.
PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("losses", ("loss_d", "loss_g", "loss_gp")),
    ("discriminator outputs", ("d_real", "d_fake")),
    ("Fréchet distance", ("fd", "inception_fd")),
    ("KID", ("kid",)),
    ("class coverage", ("coverage",)),
    ("KL from uniform", ("kl_uniform",)),
    ("conditional accuracy", ("cond_acc",)),
)
# Per-class panels: every series "<prefix><class index>" on one set of axes, one line per
# class (metrics.QualityReport.as_metrics names them), after the fixed panels.
CLASS_PANELS: tuple[tuple[str, str], ...] = (
    ("diversity inside each class (1 = the real class's spread)", "class_div."),
    ("recognised as the class asked for, per class", "class_acc."),
)


def _class_series(series: Mapping[str, Sequence[tuple[int, float]]], prefix: str) -> list[str]:
    """The series named prefix + class index that have data, in class order."""
    found = [k for k in series if k.startswith(prefix) and k[len(prefix) :].isdigit()]
    return sorted((k for k in found if series[k]), key=lambda k: int(k[len(prefix) :]))


def render_history_png(
    series: Mapping[str, Sequence[tuple[int, float]]],
    title: str,
    width_px: int = 900,
    scale: int = 1,  # resolution multiplier: the same chart at 100 * scale dpi
) -> bytes:
    """One panel per group of series that has data; an empty chart says 'no data yet'."""
    panels = [(name, [k for k in keys if series.get(k)]) for name, keys in PANELS]
    panels += [(name, _class_series(series, prefix)) for name, prefix in CLASS_PANELS]
    panels = [(name, keys) for name, keys in panels if keys]
    rows = max(len(panels), 1)
    dpi = 100 * scale
    width_px *= scale
    figure = Figure(figsize=(width_px / dpi, 2.4 * rows + 0.6), dpi=dpi)
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    if not panels:
        axes = figure.subplots()
        axes.text(0.5, 0.5, "no data yet", ha="center", va="center")
        axes.set_axis_off()
    else:
        grid = figure.subplots(rows, 1, squeeze=False, sharex=True)
        for (name, keys), row in zip(panels, grid, strict=True):
            axes = row[0]
            for key in keys:
                steps, values = zip(*series[key], strict=True)
                marker = "." if len(steps) < 30 else ""  # few points: show each one
                axes.plot(steps, values, label=key, linewidth=1.2, marker=marker)
            axes.set_title(name, fontsize=10, loc="left")
            axes.grid(alpha=0.3)
            axes.legend(fontsize=8, loc="best", ncol=5 if len(keys) > 5 else 1)
        grid[-1][0].set_xlabel("step")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
