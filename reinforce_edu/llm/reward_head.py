r"""The reward head and its Bradley–Terry fit: r(x, y) = w · standardise(φ(x, y)) + b on fixed features.

    P(y_c ≻ y_r | x) = σ(r(x, y_c) − r(x, y_r)),    L = −E[log σ(r_c − r_r)] + (λ/2)·‖w‖²

Pure torch on feature vectors φ (N, H); llm.reward_model reads φ from a frozen language model.
Taught in notebooks/05_reward_model.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reinforce_edu.core._checks import check_positive_int, check_same_shape, check_tensor


def bradley_terry_loss(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """Mean Bradley–Terry negative log-likelihood, −log σ(r_c − r_r) = softplus(r_r − r_c).

    r_chosen, r_rejected: (N,) rewards of the preferred and the other answer. Returns a scalar.
    softplus is the numerically stable form: no overflow for large reward gaps.
    Taught in notebooks/05_reward_model.ipynb.
    """
    check_tensor(r_chosen, "r_chosen", ndim=1, floating=True)
    check_tensor(r_rejected, "r_rejected", ndim=1, floating=True)
    check_same_shape(r_chosen, "r_chosen", r_rejected, "r_rejected")
    return F.softplus(r_rejected - r_chosen).mean()


class RewardHead(nn.Module):
    """r = w · (φ − μ) / s + b: a linear score on standardised features φ (B, H) -> (B,).

    μ and s (buffers) are the mean and standard deviation of the training features: hidden
    states have a few very large coordinates, and standardising lets one learning rate fit all.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        check_positive_int(hidden_size, "hidden_size")
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)  # zero start: training is deterministic (convex loss)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("mean", torch.zeros(hidden_size))
        self.register_buffer("std", torch.ones(hidden_size))

    def set_standardisation(self, features: Tensor) -> None:
        """Set μ and s from training features (N, H)."""
        check_tensor(features, "features", ndim=2, floating=True, finite=True)
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0).clamp_min(1e-6))

    def forward(self, features: Tensor) -> Tensor:
        """features (B, H) fp32 -> rewards (B,)."""
        return self.linear((features - self.mean) / self.std).squeeze(-1)  # (B,)


def train_head(head: RewardHead, chosen: Tensor, rejected: Tensor, *, steps: int = 300, lr: float = 0.05,
               weight_decay: float = 0.3, eval_chosen: Tensor | None = None,
               eval_rejected: Tensor | None = None) -> dict[str, list[float]]:
    """Fit the head by full-batch Adam on the Bradley–Terry loss + (weight_decay/2)·‖w‖².

    chosen, rejected: (N, H) features of the N training pairs. The standardisation statistics
    are set from them first. After training the bias is set so the mean reward over the
    training answers is 0 (the loss cannot see it; centred rewards are easier to read).
    Returns the curves {"train_loss": [...], "eval_loss": [...]} (eval if eval pairs given).
    Deterministic: zero initialisation, full batch, no sampling. Taught in notebooks/05_reward_model.ipynb.
    """
    check_tensor(chosen, "chosen", ndim=2, floating=True, finite=True)
    check_tensor(rejected, "rejected", ndim=2, floating=True, finite=True)
    check_same_shape(chosen, "chosen", rejected, "rejected")
    check_positive_int(steps, "steps")
    head.set_standardisation(torch.cat([chosen, rejected]))
    opt = torch.optim.Adam(head.linear.parameters(), lr=lr)
    curves: dict[str, list[float]] = {"train_loss": [], "eval_loss": []}
    for _ in range(steps):
        loss = bradley_terry_loss(head(chosen), head(rejected))
        curves["train_loss"].append(loss.item())
        if eval_chosen is not None and eval_rejected is not None:  # same weights as the train loss
            with torch.no_grad():
                curves["eval_loss"].append(bradley_terry_loss(head(eval_chosen), head(eval_rejected)).item())
        opt.zero_grad()
        (loss + 0.5 * weight_decay * head.linear.weight.pow(2).sum()).backward()
        opt.step()
    with torch.no_grad():
        head.linear.bias -= head(torch.cat([chosen, rejected])).mean()
    return curves
