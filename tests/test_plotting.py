"""The shared plots label every axis: the step or the baseline below, the metric and its unit on the left."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from reinforce_edu.teaching.plotting import LOG_LABELS, plot_log, plot_variance  # noqa: E402

RECORDS = [{"step": s, "proxy_reward": 0.1 * s, "gold_reward": 0.05 * s, "kl": 0.01 * s, "entropy": 2.0,
            "length": 16, "grad_norm": 3.0, "loss": None} for s in range(1, 4)]


def test_plot_log_labels_every_axis():
    axes = plot_log(RECORDS, keys=("proxy_reward", "gold_reward", "kl", "entropy", "length", "grad_norm", "loss"))
    for ax, key in zip(axes, ("proxy_reward", "gold_reward", "kl", "entropy", "length", "grad_norm", "loss")):
        assert ax.get_xlabel() == "step" and ax.get_ylabel() == LOG_LABELS[key]
    assert len(axes[0].lines[0].get_xdata()) == 3 and len(axes[-1].lines[0].get_xdata()) == 0  # None: not drawn
    assert "nats" in LOG_LABELS["kl"] and "tokens" in LOG_LABELS["length"]
    plt.close("all")


def test_plot_variance_labels_both_axes():
    ax = plot_variance([{"baseline": "none", "variance": 2.0, "bias_norm": 0.1},
                        {"baseline": "leave_one_out", "variance": 0.5, "bias_norm": 0.05}])
    assert ax.get_xlabel() == "baseline" and ax.get_ylabel().startswith("per-batch estimate")
    plt.close("all")
