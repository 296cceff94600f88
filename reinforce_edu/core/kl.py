r"""KL(π_θ ‖ π_ref) per token: three sample estimators, the exact value, and a frozen reference.

RLHF maximises  J_β(θ) = E_{y∼π_θ}[r(x, y)] − β·KL(π_θ(·|x) ‖ π_ref(·|x)).
By the chain rule the sequence KL is the sum of per-token KLs along the sampled prefix:

    KL(π_θ ‖ π_ref) = E_{y∼π_θ} Σ_t KL_t,    KL_t = Σ_v π_θ(v|x, y_<t) log(π_θ(v|·) / π_ref(v|·))

With only the sampled token's log-probs, write ρ_t = log π_ref(y_t|·) − log π_θ(y_t|·) (the log
ratio, "ref over policy") and estimate KL_t from one sample (Schulman, "Approximating KL
divergence", 2020):

| name | k_t                 | E[k_t] = KL_t ? | variance | sign        |
|------|---------------------|-----------------|----------|-------------|
| k1   | −ρ_t                | yes             | high     | can be < 0  |
| k2   | ½ ρ_t²              | no (2nd order)  | low      | ≥ 0         |
| k3   | (e^{ρ_t} − 1) − ρ_t | yes             | low near π_ref, heavy-tailed far | ≥ 0 |

k3 is unbiased because E_π[e^ρ] = Σ_v π_ref(v) = 1 — a mean carried by tokens π_θ rarely samples
when it has moved away from π_ref, so a finite sample of k3 then tends to underestimate. Summed
over tokens, k1 and k3 are unbiased for the *sequence* KL; k2 is not.

`exact_kl` computes KL_t from full logits (every vocabulary entry), available for a small
vocabulary or whenever both models' logits are at hand.

Taught in notebooks/04_kl_and_reference.ipynb.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from reinforce_edu.core._checks import check_choice, check_same_shape, check_tensor

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logp: Tensor, ref_logp: Tensor, estimator: str = "k1") -> Tensor:
    """Per-token KL estimate k_t from sampled-token log-probs. logp, ref_logp: (B, T) -> (B, T).

    Differentiable in `logp` (the gradient of k_t is what a "KL in the loss" term uses);
    `ref_logp` is treated as a constant.
    """
    check_choice(estimator, "kl_estimator", KL_ESTIMATORS)
    check_tensor(logp, "logp", floating=True)
    check_tensor(ref_logp, "ref_logp", floating=True)
    check_same_shape(logp, "logp", ref_logp, "ref_logp")
    log_ratio = ref_logp.detach() - logp  # ρ_t = log π_ref/π_θ, (B, T)
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio ** 2
    return torch.expm1(log_ratio) - log_ratio  # k3


def exact_kl(logits: Tensor, ref_logits: Tensor) -> Tensor:
    """KL_t = Σ_v π(v) (log π(v) − log π_ref(v)) over the last dimension. (..., V) -> (...)."""
    check_tensor(logits, "logits", floating=True)
    check_tensor(ref_logits, "ref_logits", floating=True)
    check_same_shape(logits, "logits", ref_logits, "ref_logits")
    logp = torch.log_softmax(logits, dim=-1)  # (..., V)
    ref = torch.log_softmax(ref_logits, dim=-1)  # (..., V)
    return (logp.exp() * (logp - ref)).sum(dim=-1)


def frozen_copy(model: nn.Module) -> nn.Module:
    """π_ref: a deep copy of `model` in eval mode with every parameter frozen (requires_grad=False)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
