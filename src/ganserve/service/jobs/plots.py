"""history.png: a job's loss and metric curves, drawn server-side with matplotlib (Agg).

Uses the object-oriented API (Figure + FigureCanvasAgg), never pyplot's global state, so
concurrent requests in the thread pool do not share a figure.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ganserve.gan.translation.quality import DEFAULT_ALARM_KEPT, DEFAULT_ALARM_SPREAD

Series = Mapping[str, Sequence[tuple[int, float]]]


@dataclass(frozen=True)
class Panel:
    """One set of axes: the series drawn on it, and the alarm threshold they are held to."""

    title: str
    series: tuple[str, ...]
    alarm_below: float | None = None  # drawn as a dashed line: an alarm fires under it


# Panels, in order; each is drawn when one of its series has data, so a noise GAN's chart
# has no translation panels and a translation model's (CycleGAN) no coverage or KID.
PANELS: tuple[Panel, ...] = (
    Panel("losses", ("loss_d", "loss_g", "loss_gp", "loss_cycle", "loss_identity")),
    Panel("discriminator outputs", ("d_real", "d_fake")),
    Panel("Fréchet distance", ("fd", "inception_fd")),
    Panel("KID", ("kid",)),
    Panel("class coverage", ("coverage",)),
    Panel("KL from uniform", ("kl_uniform",)),
    Panel("conditional accuracy", ("cond_acc",)),
    # translation models (gan/translation/quality.py), per direction
    Panel("digit kept: share of translations the target domain's classifier puts in their "
          "input's class", ("kept_a2b", "kept_b2a"), alarm_below=DEFAULT_ALARM_KEPT),
    Panel("a2b Fréchet distance to domain B: translations vs untranslated inputs",
          ("fd_a2b", "fd_input_a2b")),
    Panel("b2a Fréchet distance to domain A: translations vs untranslated inputs",
          ("fd_b2a", "fd_input_b2a")),
    Panel("cycle reconstruction error: mean |F(G(x)) - x|, [-1, 1] units",
          ("cycle_a2b", "cycle_b2a")),
    Panel("spread: translations' feature variance / the real target domain's",
          ("spread_a2b", "spread_b2a"), alarm_below=DEFAULT_ALARM_SPREAD),
)  # fmt: skip
# What a legend says next to a series name, where the name alone does not say it.
SERIES_NOTES = {
    "fd_a2b": "translations G(a)",
    "fd_input_a2b": "untranslated inputs a",
    "fd_b2a": "translations F(b)",
    "fd_input_b2a": "untranslated inputs b",
}
# Per-class panels: every series "<prefix><class index>" on one set of axes, one line per
# class (metrics.QualityReport.as_metrics names them), after the fixed panels.
CLASS_PANELS: tuple[tuple[str, str], ...] = (
    ("diversity inside each class (1 = the real class's spread)", "class_div."),
    ("recognised as the class asked for, per class", "class_acc."),
)


def _class_series(series: Series, prefix: str) -> list[str]:
    """The series named prefix + class index that have data, in class order."""
    found = [k for k in series if k.startswith(prefix) and k[len(prefix) :].isdigit()]
    return sorted((k for k in found if series[k]), key=lambda k: int(k[len(prefix) :]))


def history_panels(series: Series) -> list[Panel]:
    """The panels a chart of `series` draws, in order, each with only its series that have data."""
    panels = [Panel(p.title, tuple(k for k in p.series if series.get(k)), p.alarm_below)
              for p in PANELS]  # fmt: skip
    panels += [Panel(title, tuple(_class_series(series, prefix))) for title, prefix in CLASS_PANELS]
    return [panel for panel in panels if panel.series]


def render_history_png(
    series: Series,
    title: str,
    width_px: int = 900,
    scale: int = 1,  # resolution multiplier: the same chart at 100 * scale dpi
) -> bytes:
    """One panel per group of series that has data (history_panels); empty: 'no data yet'."""
    panels = history_panels(series)
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
        for panel, row in zip(panels, grid, strict=True):
            axes = row[0]
            for key in panel.series:
                steps, values = zip(*series[key], strict=True)
                marker = "." if len(steps) < 30 else ""  # few points: show each one
                label = f"{key}: {SERIES_NOTES[key]}" if key in SERIES_NOTES else key
                axes.plot(steps, values, label=label, linewidth=1.2, marker=marker)
            if panel.alarm_below is not None:
                axes.axhline(panel.alarm_below, color="tab:red", linestyle="--", linewidth=1,
                             label=f"alarm below {panel.alarm_below:g}")  # fmt: skip
            axes.set_title(panel.title, fontsize=10, loc="left")
            axes.grid(alpha=0.3)
            axes.legend(fontsize=8, loc="best", ncol=5 if len(panel.series) > 5 else 1)
        grid[-1][0].set_xlabel("step")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
