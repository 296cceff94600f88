r"""Many per-batch gradient estimates of any loss on the toy task, via the chain rule.

A REINFORCE loss depends on θ only through the per-token log-probs ℓ_it = log π_θ(y_it|x_i, y_i,<t):

    ∇_θ L = Σ_{i,t} (∂L/∂ℓ_it) · ∇_θ ℓ_it

So: compute the per-token scores s_it = ∇_θ ℓ_it once for a pool of sampled completions
(`torch.func.vmap` over `jacrev`), then for each batch let autograd give the coefficients
c_it = ∂L/∂ℓ_it of the *library's* loss function on a tiny graph (ℓ a leaf tensor). Every
estimator (corrected or seed loss, any credit or aggregation) then costs one small
autograd call per batch, and the estimates are exact, not approximations.

    ĝ_m = −Σ_{(i,t) ∈ batch m} c_it s_it      (the ascent direction: minus the loss gradient)

Taught in notebooks/03_credit_assignment.ipynb and notebooks/04_kl_and_reference.ipynb.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.func import functional_call, jacrev, vmap

from reinforce_edu.core._checks import check_positive_int, check_tensor
from reinforce_edu.toy.sequences import ToyPolicy


def token_scores(policy: ToyPolicy, prompt_ids: Tensor, tokens: Tensor, mask: Tensor,
                 chunk_size: int = 512) -> Tensor:
    """s_it = ∇_θ log π_θ(y_it|x_i, y_i,<t), zero after EOS: (N, T, D), D = number of parameters."""
    check_tensor(tokens, "tokens", ndim=2, integer=True)
    params = {n: p.detach() for n, p in policy.named_parameters()}

    def logp_one(theta: dict, prompt: Tensor, toks: Tensor) -> Tensor:
        return functional_call(policy, theta, (prompt[None], toks[None]), strict=False)[0]  # (T, V)

    def token_logp(theta: dict, prompt: Tensor, toks: Tensor) -> Tensor:
        logits = logp_one(theta, prompt, toks)
        return torch.log_softmax(logits, -1).gather(-1, toks[:, None]).squeeze(-1)  # (T,)

    jac = vmap(jacrev(token_logp), in_dims=(None, 0, 0), chunk_size=chunk_size)(params, prompt_ids, tokens)
    N, T = tokens.shape
    scores = torch.cat([jac[n].reshape(N, T, -1) for n in params], dim=2)  # (N, T, D)
    return scores * mask[..., None]


def batch_estimates(loss_fn: Callable[[Tensor, slice], Tensor], logp: Tensor, scores: Tensor,
                    batch_size: int) -> Tensor:
    """Per-batch ascent estimates ĝ_m = −∇_θ L_m for consecutive batches of `batch_size` rows: (M, D).

    loss_fn(logp_batch (B, T) leaf, rows: slice) -> scalar loss of that batch (e.g. a call to
    `reinforce_loss`); logp: (N, T) detached log-probs of the pool; scores: (N, T, D) from
    `token_scores`, or (N, D) sequence scores Σ_t s_it when the loss weights every token of a
    sequence alike (sequence credit; checked). N must be a multiple of batch_size.
    """
    check_positive_int(batch_size, "batch_size")
    N, T = logp.shape
    if N % batch_size:
        raise ValueError(f"batch_size={batch_size} must divide the number of samples N={N}")
    if scores.dim() == 2 and scores.shape[0] == N:
        return _sequence_estimates(loss_fn, logp, scores, batch_size)
    if scores.shape[:2] != (N, T):
        raise ValueError(f"scores must have shape ({N}, {T}, D) to match logp, got {tuple(scores.shape)}")
    coeffs = torch.empty(N, T, dtype=scores.dtype)  # (N, T): ∂L_m/∂ℓ_it
    for start in range(0, N, batch_size):
        rows = slice(start, start + batch_size)
        lp = logp[rows].detach().clone().requires_grad_(True)  # (B, T)
        (coeffs[rows],) = torch.autograd.grad(loss_fn(lp, rows), lp)
    M = N // batch_size
    return -torch.einsum("mbt,mbtd->md", coeffs.view(M, batch_size, T), scores.view(M, batch_size, T, -1))


def _sequence_estimates(loss_fn: Callable[[Tensor, slice], Tensor], logp: Tensor, scores: Tensor,
                        batch_size: int) -> Tensor:
    N = logp.shape[0]
    coeffs = torch.empty(N, dtype=scores.dtype)  # (N,): ∂L/∂ℓ_it, the same for every token of sequence i
    for start in range(0, N, batch_size):
        rows = slice(start, start + batch_size)
        lp = logp[rows].detach().clone().requires_grad_(True)  # (B, T)
        (c,) = torch.autograd.grad(loss_fn(lp, rows), lp)  # (B, T)
        nonzero = c != 0
        first = c.gather(1, nonzero.float().argmax(1, keepdim=True))  # (B, 1)
        if not torch.allclose(torch.where(nonzero, c, first), first.expand_as(c), rtol=1e-4, atol=1e-9):
            raise ValueError("the loss weights the tokens of a sequence differently; pass (N, T, D) token scores")
        coeffs[rows] = first.squeeze(1)
    M = N // batch_size
    return -torch.einsum("mb,mbd->md", coeffs.view(M, batch_size), scores.view(M, batch_size, -1))


def sequence_scores(policy: ToyPolicy, prompt_ids: Tensor, tokens: Tensor, mask: Tensor,
                    chunk_size: int = 256) -> Tensor:
    """S_i = Σ_t m_it ∇_θ log π_θ(y_it|·) = ∇_θ log π_θ(y_i|x_i): (N, D), in chunks to bound memory."""
    parts = [token_scores(policy, prompt_ids[i:i + chunk_size], tokens[i:i + chunk_size], mask[i:i + chunk_size],
                          chunk_size=chunk_size).sum(1) for i in range(0, tokens.shape[0], chunk_size)]
    return torch.cat(parts)


def position_variance(per_token: Tensor) -> Tensor:
    """Per-position total variance tr Cov_i(g_it) of per-sample, per-token estimates (N, T, D) -> (T,)."""
    check_tensor(per_token, "per_token", ndim=3, floating=True)
    return per_token.double().var(dim=0).sum(dim=-1)
