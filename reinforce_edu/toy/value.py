r"""A learned value baseline for the toy sequence policy: a linear head on the policy's own state.

A critic V(x, y_<t) predicts the reward still to come G_t from the GRU state h_t that the policy
uses to choose y_t (the toy counterpart of "last-block features + a scalar head" on an LLM):

    V(x, y_<t) = w · φ_t,     φ_t = [h_t, onehot(t)]            (the one-hot gives each position a bias)

    w = argmin Σ_{i,t} m_it (w · φ_it − G_it)² + λ‖w‖²  =  (ΦᵀΦ + λI)⁻¹ ΦᵀG   (ridge, closed form)

fitted on a pool of completions *separate* from the ones it is used on, so the baseline does not
depend on the sample it is subtracted from (no bias). V at t = 1 is a value of the prompt, V(x),
the baseline of sequence credit (G_1 = R).

Taught in notebooks/03_credit_assignment.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_tensor
from reinforce_edu.toy.sequences import ToyPolicy


@torch.no_grad()
def prefix_features(policy: ToyPolicy, prompt_ids: Tensor, tokens: Tensor) -> Tensor:
    """φ_t = [h_t, onehot(t)]: the state the policy reads y_t from, and the position. (B, T) -> (B, T, H + T)."""
    check_tensor(tokens, "tokens", ndim=2, integer=True)
    B, T = tokens.shape
    bos = torch.full((B, 1), policy.task.vocab_size, dtype=tokens.dtype)
    inputs = torch.cat([bos, tokens[:, :-1]], dim=1)  # (B, T): BOS, y_1..y_{T−1}
    h = policy.prompt_emb(prompt_ids)  # (B, H)
    states = []
    for t in range(T):
        h, _ = policy.step(h, inputs[:, t])
        states.append(h)
    position = torch.eye(T).expand(B, T, T)  # (B, T, T)
    return torch.cat([torch.stack(states, dim=1), position], dim=-1)  # (B, T, H + T)


def fit_value(features: Tensor, targets: Tensor, mask: Tensor, ridge: float = 1e-2) -> Tensor:
    """Ridge regression of the targets (B, T) on the features (B, T, F) over the unmasked positions: w (F,)."""
    check_tensor(features, "features", ndim=3, floating=True, finite=True)
    check_tensor(targets, "targets", ndim=2, floating=True, finite=True)
    if features.shape[:2] != targets.shape or mask.shape != targets.shape:
        raise ValueError(f"features (B, T, F), targets (B, T) and mask (B, T) must agree, got "
                         f"{tuple(features.shape)}, {tuple(targets.shape)}, {tuple(mask.shape)}")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    keep = mask.bool()
    phi, y = features[keep].double(), targets[keep].double()  # (n, F), (n,)
    gram = phi.T @ phi + ridge * torch.eye(phi.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, phi.T @ y).float()  # (F,)


def predict_value(features: Tensor, w: Tensor, mask: Tensor) -> Tensor:
    """V(x, y_<t) = w · φ_t, zero where the mask is 0: (B, T, F), (F,) -> (B, T)."""
    return (features @ w) * mask
