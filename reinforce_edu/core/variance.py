r"""Measuring an estimator: bias against the exact gradient, variance, signal-to-noise.

Given M independent batch estimates ĝ_1..ĝ_M ∈ R^D of a true gradient g = ∇J:

    mean      ḡ = (1/M) Σ_m ĝ_m
    bias      ḡ − g            (its norm is ~ sqrt(tr Σ / M) from noise alone when unbiased)
    shrink    s = ⟨ḡ, g⟩ / ‖g‖²  (1 for an unbiased estimator; 1 − 1/n for the self-inclusive mean)
    variance  tr Σ,  Σ = Cov(ĝ)  (total variance: the sum of the per-coordinate variances)
              = mean_m d_m,  d_m = ‖ĝ_m − ḡ‖²·M/(M − 1);  its SE = std_m(d_m)/sqrt(M)
    SNR       ‖g‖² / tr Σ

Sampling the bandit's batches and comparing baselines on them: `reinforce_edu.toy.bandit_estimates`;
the bar chart: `reinforce_edu.teaching.plotting.plot_variance`.

Taught in notebooks/02_baselines_and_variance.ipynb.
"""

from __future__ import annotations

import math

from torch import Tensor

from reinforce_edu.core._checks import check_tensor


def estimator_stats(estimates: Tensor, exact: Tensor | None = None) -> dict[str, float]:
    """Summarise M estimates (M, D) of a vector whose exact value is `exact` (D,) (optional).

    Returns variance (tr Cov) and variance_se, and with `exact`: bias_norm, noise_floor = sqrt(tr Cov / M)
    (the bias_norm expected from noise alone), shrink and its standard error, SNR, MSE.
    """
    est = check_tensor(estimates, "estimates", ndim=2, floating=True, finite=True)
    m = est.shape[0]
    if m < 2:
        raise ValueError(f"estimates needs at least 2 rows (M estimates) to measure a variance, got {m}")
    est = est.double()
    mean = est.mean(0)  # (D,)
    d = ((est - mean) ** 2).sum(1) * m / (m - 1)  # (M,) its mean is tr Σ (unbiased)
    variance = float(d.mean())  # tr Σ
    out = {"n_estimates": m, "variance": variance, "variance_se": float(d.std() / math.sqrt(m)),
           "noise_floor": math.sqrt(variance / m)}
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
