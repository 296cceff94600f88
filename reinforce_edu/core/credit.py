r"""Credit assignment over tokens: who gets the reward, and how token losses are averaged.

A completion y = (y_1..y_T) of prompt x has per-token score functions ∇log π_θ(y_t|x, y_<t).
REINFORCE for a whole sequence weights every token by the same sequence return R(x, y):

    sequence-level:  ĝ = Σ_t  (R − b) ∇log π_θ(y_t|x, y_<t)

With per-token rewards r_t, a token cannot change rewards paid before it, so only the
rewards from t on (the *reward-to-go*) need to multiply its score — same mean, less variance:

    token-level:     ĝ = Σ_t (G_t − b_t) ∇log π_θ(y_t|x, y_<t),   G_t = Σ_{s≥t} γ^{s−t} r_s

(γ = 1 keeps the estimator unbiased for the undiscounted return; γ < 1 trades bias for
variance.) A single terminal reward paid at EOS gives G_t = R for every t when γ = 1:
token- and sequence-level credit then coincide.

Masks. Completions end at EOS; mask m_t = 1 on completion tokens up to and including
EOS, 0 after. Masked tokens receive no reward, no advantage and no gradient.

Aggregation. The per-token losses ℓ_it = −A_it·log π_θ(y_it) are summed with weights
w_it (B sequences, |y_i| = Σ_t m_it tokens in sequence i, T = max_tokens):

| mode         | w_it                        | used by                    | length bias            |
|--------------|-----------------------------|----------------------------|------------------------|
| "sum"        | m_it / B                    | the policy-gradient theorem | none (the true gradient) |
| "seq_mean"   | m_it / (B·|y_i|)            | GRPO                       | short if A > 0, long if A < 0 |
| "token_mean" | m_it / Σ_j |y_j|            | DAPO                       | none in the limit of a big batch |
| "constant"   | m_it / (B·T)                | Dr. GRPO                   | none ("sum" scaled by 1/T) |

Taught in notebooks/03_credit_assignment.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_choice, check_positive_int, check_same_shape, check_tensor

AGGREGATIONS = ("sum", "seq_mean", "token_mean", "constant")
CREDITS = ("sequence", "token")


def check_mask(mask: Tensor | None, like: Tensor, name: str = "mask") -> Tensor:
    """Validate a (B, T) 0/1 mask shaped like `like` and return it as `like`'s float dtype.

    None means every token counts. An all-zero mask is an error: there would be nothing
    to learn from (and a division by zero in the mean-based aggregations).
    """
    if mask is None:
        return torch.ones_like(like, dtype=like.dtype if like.is_floating_point() else torch.float32)
    check_tensor(mask, name)
    check_same_shape(mask, name, like, "logp" if name == "mask" else "like")
    m = mask.to(like.dtype if like.is_floating_point() else torch.float32)
    if not ((m == 0) | (m == 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1 values")
    if not m.any():
        raise ValueError(f"{name} is all zeros: no completion token to learn from")
    return m


def completion_mask(tokens: Tensor, eos_id: int) -> Tensor:
    """m_t = 1 for tokens up to and including the first EOS, 0 after. tokens: (B, T) -> (B, T) float.

    A row without EOS (truncated at T) is all ones.
    """
    check_tensor(tokens, "tokens", ndim=2, integer=True)
    is_eos = (tokens == eos_id).long()  # (B, T)
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos  # number of EOS strictly before t
    return (eos_before == 0).float()  # (B, T)


def sequence_lengths(mask: Tensor) -> Tensor:
    """|y_i| = Σ_t m_it. mask: (B, T) -> (B,)."""
    return mask.sum(dim=1)


def terminal_rewards(rewards: Tensor, mask: Tensor) -> Tensor:
    """Place a sequence reward r_i on the last unmasked token (EOS). (B,), (B, T) -> (B, T).

    Rows with an all-zero mask get no reward anywhere.
    """
    check_tensor(rewards, "rewards", ndim=1)
    if mask.dim() != 2 or mask.shape[0] != rewards.shape[0]:
        raise ValueError(f"mask must have shape ({rewards.shape[0]}, T) to match rewards, got {tuple(mask.shape)}")
    t = torch.arange(mask.shape[1], device=mask.device)
    last = torch.where(mask > 0, t, -1).max(dim=1).values  # (B,) index of the last masked token
    out = torch.zeros(mask.shape, dtype=rewards.dtype, device=rewards.device)  # (B, T)
    rows = last >= 0
    out[rows, last[rows]] = rewards[rows]
    return out


def reward_to_go(rewards: Tensor, mask: Tensor | None = None, gamma: float = 1.0) -> Tensor:
    r"""G_t = Σ_{s≥t} γ^{s−t} m_s r_s, zero where m_t = 0. rewards: (B, T) -> (B, T).

    Vectorised as a product with the upper-triangular discount matrix D_{ts} = γ^{s−t} (s ≥ t).
    """
    check_tensor(rewards, "rewards", ndim=2, floating=True)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    m = check_mask(mask, rewards)
    T = rewards.shape[1]
    t = torch.arange(T, device=rewards.device, dtype=rewards.dtype)
    gap = t[None, :] - t[:, None]  # (T, T): s − t
    discount = torch.where(gap >= 0, float(gamma) ** gap.clamp(min=0), 0.0)  # (T, T), 0^0 = 1 on the diagonal
    return ((rewards * m) @ discount.T) * m  # (B, T)


def aggregation_weights(mask: Tensor, aggregation: str = "seq_mean", max_tokens: int | None = None) -> Tensor:
    """The weights w_it of each token loss under an aggregation mode (see the module table). (B, T) -> (B, T)."""
    check_choice(aggregation, "aggregation", AGGREGATIONS)
    B, T = mask.shape
    if aggregation == "sum":
        return mask / B
    if aggregation == "seq_mean":
        return mask / (B * sequence_lengths(mask).clamp(min=1)[:, None])
    if aggregation == "token_mean":
        return mask / mask.sum().clamp(min=1)
    L = T if max_tokens is None else check_positive_int(max_tokens, "max_tokens")
    if L < T:
        raise ValueError(f"max_tokens must be >= the number of token positions T={T}, got {L}")
    return mask / (B * L)


def aggregate(token_losses: Tensor, mask: Tensor | None = None, aggregation: str = "seq_mean",
              max_tokens: int | None = None) -> Tensor:
    """Σ_it w_it ℓ_it with the weights of `aggregation_weights`. token_losses: (B, T) -> scalar.

    Masked positions are selected out (not multiplied by 0), so a NaN/inf there cannot leak.
    """
    check_tensor(token_losses, "token_losses", ndim=2, floating=True)
    m = check_mask(mask, token_losses)
    w = aggregation_weights(m, aggregation, max_tokens)  # (B, T)
    return torch.where(m > 0, token_losses * w, torch.zeros((), dtype=token_losses.dtype)).sum()
