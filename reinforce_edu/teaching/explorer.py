r"""An interactive explorer of the REINFORCE gradient's variance under each baseline.

Four controls — which baselines, samples per prompt k, reward offset c, number of arms A —
rebuild the bandit, re-measure every selected baseline on the same M batches
(`variance.compare_baselines`) and redraw the bar chart (`variance.plot_variance`):

    tr Cov(ĝ)  and  ‖E ĝ − ∇J‖²,   ĝ = (1/n) Σ_i (R_i + c − b_i) ∇_θ log π_θ(a_i|x_i),  n = P·k

The figure is rendered to PNG into an `ipywidgets.Image`, so a redraw is one call
(`VarianceExplorer.update`) whose time is measured. Two things keep it short: each baseline's
row is measured once per (k, offset, arms) and kept (a row does not depend on which other
baselines are selected: the same seeded batches, a fresh baseline), and the chart is redrawn
in place (`variance_chart.VarianceChart`). `static_figure` draws the same content with
matplotlib for viewers where widgets cannot render.

Taught in notebooks/02_baselines_and_variance.ipynb.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from reinforce_edu.core._checks import check_nonnegative, check_positive_int
from reinforce_edu.toy.bandits import make_bandit
from reinforce_edu.teaching.plotting import plot_variance
from reinforce_edu.teaching.variance_chart import VarianceChart
from reinforce_edu.toy.bandit_estimates import compare_baselines, default_baselines

BASELINE_NAMES = ("none", "running_mean", "batch_mean", "leave_one_out", "value")
CONTROLS = ("baselines", "k", "offset", "n_arms")


def explorer_rows(baselines: Sequence[str], k: int, offset: float, n_arms: int, *, n_prompts: int = 4,
                  noise_std: float = 0.5, init_std: float = 1.0, n_batches: int = 100,
                  seed: int = 0) -> list[dict]:
    """The data one explorer view plots: `compare_baselines` rows for the selected baselines.

    The bandit (`make_bandit(n_prompts, n_arms, noise_std, offset, seed)`), the policy
    (`init_std`, `seed`) and the M = `n_batches` batches of P·k samples are fixed by the
    seed, so one setting always gives the same numbers.
    """
    if isinstance(baselines, str) or not all(b in BASELINE_NAMES for b in baselines):
        raise ValueError(f"baselines must be a sequence of names from {BASELINE_NAMES}, got {baselines!r}")
    if len(baselines) == 0:
        raise ValueError("baselines is empty; select at least one baseline")
    check_positive_int(k, "k", minimum=2)
    check_positive_int(n_arms, "n_arms", minimum=2)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)):
        raise TypeError(f"offset must be a float, got {type(offset).__name__}")
    check_nonnegative(noise_std, "noise_std")
    bandit = make_bandit(n_prompts=n_prompts, n_arms=n_arms, noise_std=noise_std, offset=float(offset), seed=seed)
    policy = bandit.make_policy(init_std=init_std, seed=seed)
    fresh = default_baselines(n_prompts)  # stateful baselines start fresh for every view
    return compare_baselines(bandit, policy, {name: fresh[name] for name in baselines}, k=k,
                             n_batches=n_batches, seed=seed)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run tiny tensor work on one thread: on a busy 2-core CPU a second thread that is
    not scheduled makes every op above the parallel grain size wait (10x slower redraws)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _title(settings: Mapping) -> str:
    return f"k = {settings['k']},  offset = {settings['offset']:g},  arms = {settings['n_arms']}"


class VarianceExplorer:
    """Widgets (baselines, k, offset, arms) around `compare_baselines` + `plot_variance`.

    Display `explorer.widget` in a notebook. Every change of a control calls `update()`,
    which recomputes `rows` (the plotted data), redraws the figure and stores the time it
    took in `last_redraw_s`. `n_batches` trades precision for speed (100: a relative error
    of ~6 % on each bar; on a 2-core AMD EPYC Zen 3 ~45 ms to measure five baselines, ~30 ms to
    redraw the chart in place, ~55 ms to draw it in full when the baselines change).
    Taught in notebooks/02_baselines_and_variance.ipynb.
    """

    def __init__(self, *, baselines: Sequence[str] = BASELINE_NAMES, k: int = 4, offset: float = 0.0,
                 n_arms: int = 5, n_prompts: int = 4, noise_std: float = 0.5, init_std: float = 1.0,
                 n_batches: int = 100, seed: int = 0, dpi: int = 72) -> None:
        self.fixed = dict(n_prompts=check_positive_int(n_prompts, "n_prompts"), noise_std=noise_std,
                          init_std=init_std, n_batches=check_positive_int(n_batches, "n_batches", minimum=2),
                          seed=seed)
        self.baselines = widgets.SelectMultiple(options=BASELINE_NAMES, value=tuple(baselines), rows=5,
                                                description="baselines")
        self.k = widgets.IntSlider(value=k, min=2, max=16, description="k / prompt", continuous_update=False)
        self.offset = widgets.FloatSlider(value=offset, min=-5.0, max=10.0, step=0.5, description="offset",
                                          continuous_update=False)
        self.n_arms = widgets.IntSlider(value=n_arms, min=2, max=20, description="arms", continuous_update=False)
        self.image = widgets.Image(format="png")
        self.status = widgets.HTML()
        self.figure = Figure(figsize=(6, 3.2), dpi=dpi)
        self.chart = VarianceChart(self.figure)
        self.ax = self.chart.ax
        self.figure.subplots_adjust(left=0.12, right=0.98, top=0.9, bottom=0.25)  # fixed: no layout pass
        self.rows: list[dict] = []
        self.measured: list[str] = []  # the baselines the last update measured (the others were kept)
        self._kept: dict[tuple, dict] = {}  # (baseline, k, offset, n_arms) -> its row
        self.last_redraw_s = float("nan")
        self.redraw_times: list[float] = []
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.widget = widgets.HBox([widgets.VBox(list(self.controls.values())),
                                    widgets.VBox([self.image, self.status])])
        self.update()  # first draw (also pays the one-off vmap warm-up)
        self.redraw_times.clear()

    @property
    def controls(self) -> dict[str, widgets.ValueWidget]:
        return {"baselines": self.baselines, "k": self.k, "offset": self.offset, "n_arms": self.n_arms}

    def settings(self) -> dict:
        """The current control values: baselines, k, offset, n_arms."""
        return {"baselines": tuple(self.baselines.value), "k": int(self.k.value),
                "offset": float(self.offset.value), "n_arms": int(self.n_arms.value)}

    def _on_change(self, change: dict) -> None:
        self.update()

    def forget_rows(self) -> None:
        """Drop the kept rows: every view is measured again on its first visit."""
        self._kept.clear()

    def _rows(self, settings: dict) -> list[dict]:
        """`explorer_rows(**settings)`, measuring only the baselines not yet measured at these k, offset, arms."""
        key = (settings["k"], settings["offset"], settings["n_arms"])
        self.measured = [b for b in settings["baselines"] if (b, *key) not in self._kept]
        if self.measured:
            with _one_thread():
                fresh = explorer_rows(self.measured, *key, **self.fixed)
            if len(self._kept) > 5000:  # bounded: a long session starts over
                self._kept.clear()
            self._kept.update({(row["baseline"], *key): row for row in fresh})
        return [dict(self._kept[(b, *key)]) for b in settings["baselines"]]

    def update(self) -> float:
        """Recompute `rows` for the current settings and redraw; returns the seconds it took."""
        start = time.perf_counter()
        settings = self.settings()
        if not settings["baselines"]:
            self.rows, self.measured = [], []
            self.chart.message("select at least one baseline")
        else:
            self.rows = self._rows(settings)
            self.chart.show(self.rows, _title(settings))
        self.image.value = self.chart.png()
        self.last_redraw_s = time.perf_counter() - start
        self.redraw_times.append(self.last_redraw_s)
        variances = " · ".join(f"{r['baseline']} {r['variance']:.3g}" for r in self.rows)
        self.status.value = (f"tr Cov(ĝ): {variances or '–'}<br>redraw {1000 * self.last_redraw_s:.0f} ms, "
                             f"{len(self.measured)}/{len(self.rows)} baselines measured · "
                             f"n = P·k = {self.fixed['n_prompts'] * settings['k']} samples a batch, "
                             f"{self.fixed['n_batches']} batches")
        return self.last_redraw_s

    def static_figure(self, variations: Sequence[Mapping] = ({},), ncols: int = 2):
        """The explorer's plot as a plain matplotlib figure, one panel per variation.

        Each variation overrides some of the current settings, e.g. ``[{}, {"k": 8}]``
        draws the current view and the same with k = 8. Returns the pyplot figure.
        """
        import matplotlib.pyplot as plt

        if len(variations) == 0:
            raise ValueError("variations is empty; pass at least one mapping of settings ({} = current)")
        bad = [key for v in variations for key in v if key not in CONTROLS]
        if bad:
            raise ValueError(f"unknown setting(s) {bad}; expected keys from {CONTROLS}")
        ncols = min(ncols, len(variations))
        nrows = -(-len(variations) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.2 * nrows), squeeze=False)
        for ax, variation in zip(axes.flat, variations):
            settings = {**self.settings(), **variation}
            with _one_thread():
                rows = explorer_rows(**settings, **self.fixed)
            plot_variance(rows, ax=ax, title=_title(settings))
        for ax in axes.flat[len(variations):]:
            ax.set_axis_off()
        fig.tight_layout()
        return fig
