r"""Measuring an estimator: bias against the exact gradient, variance, signal-to-noise.

Given M independent batch estimates ĝ_1..ĝ_M ∈ R^D of a true gradient g = ∇J:

    mean      ḡ = (1/M) Σ_m ĝ_m
    bias      ḡ − g            (its norm is ~ sqrt(tr Σ / M) from noise alone when unbiased)
    shrink    s = ⟨ḡ, g⟩ / ‖g‖²  (1 for an unbiased estimator; 1 − 1/n for the self-inclusive mean)
    variance  tr Σ,  Σ = Cov(ĝ)  (total variance: the sum of the per-coordinate variances)
    SNR       ‖g‖² / tr Σ

Taught in notebooks/02_baselines_and_variance.ipynb.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor

from ._checks import check_positive_int, check_tensor
from .bandits import BanditBatch, ContextualBandit, SoftmaxPolicy
from .baselines import (Baseline, BatchMeanBaseline, LeaveOneOutBaseline, NoBaseline,
                        RunningMeanBaseline, ValueBaseline)
from .per_sample import per_sample_grads
from .policy_gradient import _score_loss


def estimator_stats(estimates: Tensor, exact: Tensor | None = None) -> dict[str, float]:
    """Summarise M estimates (M, D) of a vector whose exact value is `exact` (D,) (optional).

    Returns variance (tr Cov), and with `exact`: bias_norm, noise_floor = sqrt(tr Cov / M)
    (the bias_norm expected from noise alone), shrink and its standard error, SNR, MSE.
    """
    est = check_tensor(estimates, "estimates", ndim=2, floating=True, finite=True)
    m = est.shape[0]
    if m < 2:
        raise ValueError(f"estimates needs at least 2 rows (M estimates) to measure a variance, got {m}")
    est = est.double()
    mean = est.mean(0)  # (D,)
    variance = float(est.var(0, unbiased=True).sum())  # tr Σ
    out = {"n_estimates": m, "variance": variance, "noise_floor": math.sqrt(variance / m)}
    if exact is not None:
        exact = check_tensor(exact, "exact", floating=True, finite=True).reshape(-1).double()
        if exact.shape[0] != est.shape[1]:
            raise ValueError(f"exact must have {est.shape[1]} elements to match estimates, got {exact.shape[0]}")
        sq = float(exact @ exact)
        s = est @ exact / sq  # (M,) per-batch projection coefficients
        out.update(
            bias_norm=float((mean - exact).norm()),
            shrink=float(s.mean()),
            shrink_se=float(s.std(unbiased=True) / math.sqrt(m)),
            snr=sq / variance if variance > 0 else float("inf"),
            mse=float(((est - exact) ** 2).sum(1).mean()),
            grad_norm=math.sqrt(sq),
        )
    return out


def default_baselines(n_prompts: int, decay: float = 0.9, value_lr: float = 0.5) -> dict[str, Baseline]:
    """The five baselines of lesson 02, fresh: none, running mean, batch mean, leave-one-out, value."""
    return {
        "none": NoBaseline(),
        "running_mean": RunningMeanBaseline(decay=decay),
        "batch_mean": BatchMeanBaseline(),
        "leave_one_out": LeaveOneOutBaseline(),
        "value": ValueBaseline(n_prompts=n_prompts, lr=value_lr),
    }


def sample_batches(bandit: ContextualBandit, policy: SoftmaxPolicy, n_batches: int, k: int,
                   seed: int = 0) -> BanditBatch:
    """M batches at once from a fixed policy: prompts (P,), actions and rewards (M, P, k)."""
    check_positive_int(n_batches, "n_batches", minimum=2)
    check_positive_int(k, "k")
    g = torch.Generator().manual_seed(seed)
    prompts = torch.arange(bandit.n_prompts)
    big = prompts.repeat(n_batches)  # (M·P,)
    actions = policy.sample(big, k, generator=g)  # (M·P, k)
    rewards = bandit.rewards(big, actions, generator=g)  # (M·P, k)
    shape = (n_batches, bandit.n_prompts, k)
    return BanditBatch(prompts, actions.reshape(shape), rewards.reshape(shape))


def baseline_estimates(policy: SoftmaxPolicy, batches: BanditBatch, baseline: Baseline,
                       warmup: int = 10) -> tuple[Tensor, Tensor]:
    """Per-sample and per-batch REINFORCE estimates under one baseline.

    batches: actions/rewards (M, P, k). The baseline is called then updated batch by
    batch, as in training (stateful baselines first see `warmup` batches).
    Returns (per_sample (M, n, D), per_batch (M, D)) with n = P·k, D = P·A.
    """
    m, p, k = batches.rewards.shape
    for i in range(min(warmup, m)):
        baseline.update(batches.rewards[i], batches.prompts)
    adv = torch.empty_like(batches.rewards)  # (M, P, k)
    for i in range(m):
        adv[i] = batches.rewards[i] - baseline(batches.rewards[i], batches.prompts)
        baseline.update(batches.rewards[i], batches.prompts)
    prompts = batches.prompts.repeat_interleave(k).repeat(m)  # (M·n,)
    g = per_sample_grads(policy, _score_loss, prompts, batches.actions.reshape(-1), adv.detach().reshape(-1),
                         params=["logits"])  # (M·n, D)
    g = g.reshape(m, p * k, -1)  # (M, n, D)
    return g, g.mean(1)


def compare_baselines(bandit: ContextualBandit, policy: SoftmaxPolicy,
                      baselines: Mapping[str, Baseline] | None = None, *, k: int = 4,
                      n_batches: int = 500, seed: int = 0, warmup: int = 10) -> list[dict]:
    """Bias, variance and SNR of the REINFORCE estimate for each baseline, on the same samples.

    Every baseline sees the *same* M batches (common random numbers), so differences
    come from the baseline alone. Returns one dict per baseline (see `estimator_stats`),
    plus `per_sample_variance` (tr Cov of a single g_i).
    """
    baselines = default_baselines(bandit.n_prompts) if baselines is None else baselines
    if len(baselines) == 0:
        raise ValueError("baselines is empty; pass a mapping name -> Baseline")
    batches = sample_batches(bandit, policy, n_batches, k, seed)
    exact = bandit.exact_gradient(policy.logits).reshape(-1)
    rows = []
    for name, baseline in baselines.items():
        per_sample, per_batch = baseline_estimates(policy, batches, baseline, warmup=warmup)
        stats = estimator_stats(per_batch, exact)
        stats["per_sample_variance"] = float(per_sample.reshape(-1, per_sample.shape[-1]).double().var(0).sum())
        rows.append({"baseline": name, **stats})
    return rows


def format_table(rows: list[dict], columns: tuple[str, ...] = ("variance", "bias_norm", "noise_floor", "shrink", "snr"),
                 digits: int = 3, significant: bool = False) -> str:
    """A fixed-width text table of `compare_baselines` rows (rounded for printing).

    `digits` decimals, or `digits` significant figures with `significant=True`.
    """
    kind = "g" if significant else "f"
    head = f"{'baseline':<15}" + "".join(f"{c:>13}" for c in columns)
    lines = [head]
    for r in rows:
        lines.append(f"{r['baseline']:<15}" + "".join(f"{r[c]:>13.{digits}{kind}}" for c in columns))
    return "\n".join(lines)


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
    ax.set_ylabel("per-batch estimate")
    ax.set_title(title or "REINFORCE gradient: variance per baseline")
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=8)
    return ax
