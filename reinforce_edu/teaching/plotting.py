"""Plots the lessons share (matplotlib is imported only when one is drawn)."""

from __future__ import annotations

from pathlib import Path


def plot_variance(rows: list[dict], ax=None, title: str | None = None):
    """Bar chart of the total variance per baseline (log scale), bias shown as error-free markers."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    names = [r["baseline"] for r in rows]
    ax.bar(names, [r["variance"] for r in rows], color="tab:blue", alpha=0.8, label="variance tr Cov(ĝ)")
    if all("bias_norm" in r for r in rows):
        ax.plot(names, [r["bias_norm"] ** 2 for r in rows], "o", color="tab:red", label="bias² ‖E ĝ − ∇J‖²")
    ax.set_yscale("log")
    ax.set_xlabel("baseline")
    ax.set_ylabel("per-batch estimate (log scale)")
    ax.set_title(title or "REINFORCE gradient: variance per baseline")
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=8)
    return ax


LOG_LABELS = {  # the y-axis of each metric of metrics.jsonl, with its unit
    "proxy_reward": "proxy reward r_φ (reward model)",
    "gold_reward": "gold reward (VADER, [-1, 1])",
    "kl": "KL(π_θ ‖ π_ref), nats per answer",
    "entropy": "entropy, nats per token",
    "length": "answer length, tokens",
    "grad_norm": "‖g‖ before clipping",
    "loss": "loss",
    "returns": "return R = r − β·KL",
    "advantage_std": "std of the advantages",
    "step_time": "seconds per step",
    "gen_time": "sampling seconds per step",
    "peak_memory_mib": "peak memory, MiB",
}


def plot_log(path_or_records, keys: tuple[str, ...] = ("proxy_reward", "gold_reward", "kl", "entropy",
                                                       "length", "grad_norm"), axes=None, label: str | None = None):
    """One small plot per metric against the step, from a metrics.jsonl or its records. Returns the axes.

    Each axis is labelled: the step below, the metric and its unit (`LOG_LABELS`) on the left.
    """
    import matplotlib.pyplot as plt

    from reinforce_edu.llm.checkpoint import read_log
    records = read_log(path_or_records) if isinstance(path_or_records, (str, Path)) else path_or_records
    if axes is None:
        _, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.6))
    for ax, key in zip(list(getattr(axes, "flat", axes)), keys):
        steps = [r["step"] for r in records if r.get(key) is not None]
        ax.plot(steps, [r[key] for r in records if r.get(key) is not None], label=label)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.set_ylabel(LOG_LABELS.get(key, key))
    return axes
