"""The variance explorer's bar chart, redrawn in place: only what a new view changes is drawn again.

A view is the rows of `compare_baselines` for some baselines (`plot_variance` draws them). When the
next view shows the *same baselines*, most of the figure is unchanged: the white background, the
x axis with the baseline names and its label. The chart keeps the pixels of those (matplotlib's
blitting: `copy_from_bbox` / `restore_region`, as in its animation guide), updates the artists that
change with set_* calls — bar heights (`set_height`), bias markers (`set_ydata`), y limits
(`relim` + `autoscale_view`), title (`set_title`) — and draws only them, in the z-order a full draw
uses: bars, y axis (ticks, tick labels, label), markers, frame, legend, title. The pixels are the
same as a full draw of the new view (tests/test_explorer.py compares them); the time is not: text is
the costly part of a matplotlib figure (2–4 ms a string on a 2-core AMD EPYC Zen 3), and the fast
path leaves out the x axis (its ticks, the baseline names, the axis label).
A view with other baselines, or the message, is a full draw.

Taught in notebooks/02_baselines_and_variance.ipynb (section 8).
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from PIL import Image

from reinforce_edu.teaching.plotting import plot_variance


class VarianceChart:
    """`plot_variance` on one axes of `figure`, redrawn in place while the baselines stay the same.

    `show(rows, title)` draws a view, `message(text)` a text instead of the chart, `png()` returns
    the figure's pixels as PNG bytes. `full_draws` counts the views drawn from scratch.
    """

    def __init__(self, figure: Figure) -> None:
        self.figure = figure
        self.canvas = FigureCanvasAgg(figure)
        self.ax = figure.add_subplot()
        self.names: tuple[str, ...] | None = None  # the baselines drawn; None: the next view is a full draw
        self.full_draws = 0
        self._background = None

    def _changing(self) -> list[Artist]:
        """The artists a new view of the same baselines changes, in the order a full draw draws them."""
        ax = self.ax
        artists = [*ax.patches, *ax.lines, *ax.spines.values(), ax.yaxis, ax.title]
        artists += [ax.get_legend()] if ax.get_legend() is not None else []
        return sorted(artists, key=lambda a: a.get_zorder())  # stable: ties keep Axes.get_children's order

    def show(self, rows: list[dict], title: str) -> None:
        """Draw the bars of `rows` (one per baseline, `plot_variance`'s keys) under `title`."""
        names = tuple(r["baseline"] for r in rows)
        markers = all("bias_norm" in r for r in rows)
        if names != self.names or markers != bool(self.ax.lines):
            self._full(rows, title)
            return
        ax = self.ax
        for bar, row in zip(ax.patches, rows):
            bar.set_height(row["variance"])
        if markers:
            ax.lines[0].set_ydata([r["bias_norm"] ** 2 for r in rows])
        ax.relim()  # the y limits a fresh plot of these rows gets
        ax.autoscale_view()
        ax.set_title(title)
        self.canvas.restore_region(self._background)
        for artist in self._changing():
            ax.draw_artist(artist)

    def _full(self, rows: list[dict], title: str) -> None:
        ax = self.ax
        ax.clear()
        ax.set_axis_on()
        plot_variance(rows, ax=ax, title=title)
        ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks cost half the drawing time
        changing = self._changing()
        for artist in changing:
            artist.set_animated(True)  # left out of canvas.draw(): the background is what stays
        self.canvas.draw()
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        for artist in changing:
            ax.draw_artist(artist)
        self.names = tuple(r["baseline"] for r in rows)
        self.full_draws += 1

    def message(self, text: str) -> None:
        """Show `text` in place of the chart (e.g. when no baseline is selected)."""
        self.ax.clear()
        self.ax.text(0.5, 0.5, text, ha="center", va="center")
        self.ax.set_axis_off()
        self.canvas.draw()
        self.names = None
        self.full_draws += 1

    def pixels(self) -> np.ndarray:
        """The figure as drawn: (H, W, 4) uint8 RGBA, a copy."""
        return np.array(self.canvas.buffer_rgba())

    def png(self, compress_level: int = 1) -> bytes:
        """The figure as drawn, PNG-encoded (zlib level 1: 6 % larger than matplotlib's level 6, 3 ms not 5)."""
        buf = io.BytesIO()
        Image.fromarray(np.asarray(self.canvas.buffer_rgba())).save(buf, format="png", compress_level=compress_level)
        return buf.getvalue()
