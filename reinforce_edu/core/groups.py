r"""Zero-variance groups: with 0/1 rewards, a prompt whose k answers all pass or all fail teaches nothing.

Leave-one-out and GRPO's group mean both give A_ij = R_ij − b_ij = 0 when R_i1 = … = R_ik, so such a
group's k samples were paid for and carry no gradient (with β = 0; with β > 0 only their KL term is left).
For a prompt with pass rate p_i, the chance of that is

    P(zero variance) = p_i^k + (1 − p_i)^k                  (all pass, or all fail)

so the fraction of wasted groups is large at the start (p ≈ 0) and at the end (p ≈ 1) of training, and
falls with k. DAPO (Yu et al., 2025, "dynamic sampling") keeps only groups with 0 < mean_j R_ij < 1 — here
for any reward: groups whose k rewards are not all equal — and samples more until the batch is full;
`TrainConfig.group_filter="drop_zero_variance"` drops them (no refill: the batch shrinks, and the log shows by
how much). Taught in notebooks/08_verifiable_rewards.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_choice, check_positive_int, check_tensor

GROUP_FILTERS = ("none", "drop_zero_variance")
"""`TrainConfig.group_filter`: keep every group, or DAPO's filter (drop groups whose k rewards are equal)."""


def zero_variance_groups(rewards: Tensor, atol: float = 0.0) -> Tensor:
    """rewards: (P, k) -> (P,) bool, True where the k rewards of a prompt are all equal (within atol)."""
    check_tensor(rewards, "rewards", ndim=2, floating=True, finite=True)
    spread = rewards.max(dim=1).values - rewards.min(dim=1).values  # (P,)
    return spread <= atol


def zero_variance_fraction(rewards: Tensor) -> float:
    """Fraction of the P groups of `rewards` (P, k) whose rewards are all equal."""
    return float(zero_variance_groups(rewards).double().mean())


def expected_zero_variance_fraction(pass_rates: Tensor, k: int) -> float:
    """mean_i [p_i^k + (1 − p_i)^k]: the expected fraction of zero-variance groups of k binary samples."""
    check_tensor(pass_rates, "pass_rates", ndim=1, floating=True, finite=True)
    k = check_positive_int(k, "k")
    if ((pass_rates < 0) | (pass_rates > 1)).any():
        raise ValueError("pass_rates must lie in [0, 1]")
    p = pass_rates.double()
    return float((p ** k + (1 - p) ** k).mean())


def kept_rows(rewards: Tensor, k: int, group_filter: str = "none") -> Tensor:
    """rewards: (B,) prompt-major, B = P·k -> (B,) bool, the rows the filter keeps (every row for "none")."""
    check_choice(group_filter, "group_filter", GROUP_FILTERS)
    check_tensor(rewards, "rewards", ndim=1, floating=True, finite=True)
    k = check_positive_int(k, "k")
    if rewards.shape[0] % k:
        raise ValueError(f"k={k} must divide the number of rewards {rewards.shape[0]} (B = P·k)")
    if group_filter == "none":
        return torch.ones_like(rewards, dtype=torch.bool)
    keep = ~zero_variance_groups(rewards.view(-1, k))  # (P,)
    return keep.repeat_interleave(k)  # (B,)


def select_rows(keep: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """The rows `keep` (B,) bool selects of each (B, ...) tensor; the tensors themselves when it keeps all."""
    if bool(keep.all()):
        return tensors
    return tuple(t[keep] for t in tensors)
