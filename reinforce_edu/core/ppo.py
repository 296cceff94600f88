r"""PPO's mathematics, pure torch: per-token rewards, GAE, the clipped surrogate and value loss, the update.

The clipped policy-gradient method of Schulman et al. (2017), as used for RLHF by Ouyang et al. (2022).
Per completion token t, with s_t = (x, y_<t):

    per-token reward   r_t = −β·k_t + r(x, y)·[t = |y|]          (the KL to π_ref, paid where incurred; k1 by default)
    TD error           δ_t = r_t + γ·V_φ(s_{t+1}) − V_φ(s_t)      (V_φ(s_{|y|+1}) = 0)
    GAE advantage      Â_t = Σ_{l≥0} (γλ)^l δ_{t+l}               (= credit.reward_to_go(δ, γλ))
    value target       Ĝ_t = Â_t + V_φ(s_t)
    ratio              ρ_t = π_θ(y_t|s_t) / π_old(y_t|s_t)
    policy loss        L^CLIP = −Σ_t w_t · min(ρ_t Â_t, clip(ρ_t, 1 − ε, 1 + ε) Â_t)
    value loss         L^V = ½ Σ_t w'_t · max((V_φ − Ĝ_t)², (V_old + clip(V_φ − V_old, ±ε_v) − Ĝ_t)²)

w_t: the aggregation weights of `reinforce_edu.core.credit`, w'_t: "token_mean". Each batch of samples
is used for `epochs` passes. At the first pass π_θ = π_old, so ρ = 1 and
∇L^CLIP = −Σ_t w_t Â_t ∇log π_θ(y_t): the REINFORCE estimate with a learned, per-token baseline V_φ
(γ = λ = 1 gives Â_t = R − V_φ(s_t) exactly). The later passes reuse the samples, and the clip stops
the policy from moving far from π_old on them.

`ppo_update` takes the policy's and the critic's forward passes as callables, so the same update
serves the LLM (`reinforce_edu.llm.ppo`: the critic is a copy of the transformer) and the toy
sequence task (`reinforce_edu.toy.methods`: the critic is a copy of the toy GRU).

A batch split across N processes (`batch`, `reinforce_edu.core.split`; default `LOCAL`, one process): each
process computes r_t, Â_t and Ĝ_t of its own rows, but the whitening's mean and std are those of the valid
tokens of all rows, each loss is scaled by the process's share s_r of the count it divides by (so that
the N gradients sum to the whole batch's), and the clip fraction, approximate KL, losses and advantage
std are those of the whole batch: in every epoch, the one-process update.

Taught in notebooks/07_comparison.ipynb.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_nonnegative, check_positive_int, check_same_shape, check_tensor
from reinforce_edu.core.credit import aggregate, check_mask, reward_to_go, terminal_rewards
from reinforce_edu.core.kl import kl_estimate
from reinforce_edu.core.split import LOCAL, Batch, share, valid_values, widest


def token_rewards(rewards: Tensor, mask: Tensor, kl_tok: Tensor | None = None, beta: float = 0.0) -> Tensor:
    """r_t = r·[t = last token] − β·k_t: (B,), (B, T), (B, T) -> (B, T), zero after EOS, detached."""
    check_tensor(rewards, "rewards", ndim=1, floating=True, finite=True)
    m = check_mask(mask, torch.zeros(mask.shape, dtype=rewards.dtype, device=rewards.device))
    beta = check_nonnegative(beta, "beta")
    r = terminal_rewards(rewards, m)  # (B, T)
    if kl_tok is not None and beta > 0:
        check_same_shape(kl_tok, "kl_tok", m, "mask")
        r = r - beta * torch.where(m > 0, kl_tok.detach().to(r.dtype), torch.zeros((), dtype=r.dtype))
    return r.detach()


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95) -> tuple[Tensor, Tensor]:
    r"""Generalised advantage estimation: (Â, Ĝ), each (B, T), zero after EOS, detached.

    δ_t = r_t + γ V_{t+1} − V_t (V after the last token = 0), Â_t = Σ_{l≥0} (γλ)^l δ_{t+l},
    Ĝ_t = Â_t + V_t.
    rewards, values, mask: (B, T). gamma, lam in [0, 1].
    """
    check_tensor(rewards, "rewards", ndim=2, floating=True, finite=True)
    check_tensor(values, "values", ndim=2, floating=True, finite=True)
    check_same_shape(values, "values", rewards, "rewards")
    for name, x in (("gamma", gamma), ("lam", lam)):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1], got {x!r}")
    m = check_mask(mask, rewards)
    v = values.detach() * m  # (B, T)
    next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)  # (B, T): V_{t+1}, 0 after the end
    delta = (rewards.detach() + gamma * next_v - v) * m  # (B, T)
    adv = reward_to_go(delta, m, float(gamma) * float(lam))  # Σ_l (γλ)^l δ_{t+l}
    return adv, (adv + v) * m


def whiten(x: Tensor, mask: Tensor, eps: float = 1e-8, batch: Batch = LOCAL) -> Tensor:
    """(x − mean) / std over the unmasked entries (B, T) -> (B, T); 0 where mask == 0.

    batch: the mean and std are those of the unmasked entries of every process's rows (core.split).
    """
    mask = check_mask(mask, x)
    m = mask > 0
    vals = valid_values(batch, x, mask)  # (n,): x[m] in one process
    if vals.numel() < 2:
        return torch.where(m, x - vals.mean(), torch.zeros((), dtype=x.dtype))
    return torch.where(m, (x - vals.mean()) / (vals.std() + eps), torch.zeros((), dtype=x.dtype))


def clipped_surrogate(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip_range: float = 0.2,
                      aggregation: str = "token_mean", batch: Batch = LOCAL) -> tuple[Tensor, Tensor]:
    """L^CLIP = Σ_t w_t · max(−ρ_t Â_t, −clip(ρ_t, 1 ± ε) Â_t), and the fraction of tokens the clip acts on.

    logp (with grad), old_logp, advantages, mask: (B, T). Returns (loss scalar, clip fraction scalar).
    batch: the rows are this process's part of a split batch (core.split): the loss is s_r · L^CLIP_r, its
    part of the whole batch's loss, and the clip fraction that of the whole batch.
    """
    check_tensor(logp, "logp", ndim=2, floating=True)
    check_same_shape(old_logp, "old_logp", logp, "logp")
    check_same_shape(advantages, "advantages", logp, "logp")
    eps = check_nonnegative(clip_range, "clip_range")
    m = check_mask(mask, logp)
    valid = m > 0
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    log_ratio = torch.where(valid, logp - old_logp.detach(), zero)  # (B, T), 0 after EOS
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = advantages.detach()
    per_token = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - eps, 1 + eps))  # (B, T)
    clipped = ((-adv * ratio.clamp(1 - eps, 1 + eps)) > (-adv * ratio)) & valid
    width = widest(batch, m) if aggregation == "constant" else None  # "constant" divides by max_r T_r
    loss = aggregate(per_token, m, aggregation, width) * share(batch, m, aggregation)
    return loss, batch.total(clipped.float().sum()) / batch.total(valid.sum())


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor,
                       clip_range: float = 0.2, batch: Batch = LOCAL) -> Tensor:
    """L^V = ½ mean_t max((V − Ĝ)², (V_old + clip(V − V_old, ±ε_v) − Ĝ)²) over the unmasked tokens.

    values (with grad), old_values, returns, mask: (B, T). Returns a scalar.
    batch: a split batch (core.split): s_r · L^V_r, this process's part of the whole batch's token mean.
    """
    check_tensor(values, "values", ndim=2, floating=True)
    check_same_shape(old_values, "old_values", values, "values")
    check_same_shape(returns, "returns", values, "values")
    eps = check_nonnegative(clip_range, "value_clip_range")
    m = check_mask(mask, values)
    old = old_values.detach()
    v_clip = old + (values - old).clamp(-eps, eps)  # (B, T)
    per_token = 0.5 * torch.maximum((values - returns) ** 2, (v_clip - returns) ** 2)  # (B, T)
    return aggregate(per_token, m, "token_mean") * share(batch, m, "token_mean")


def _targets(old_logp: Tensor, old_values: Tensor, rewards: Tensor, m: Tensor, ref_logp: Tensor | None, beta: float,
             kl_estimator: str, gamma: float, lam: float, whiten_advantages: bool, batch: Batch, stats: dict) -> tuple:
    """The first pass's (Â, Ĝ), each (B, T), from π_old and V_old; fills stats' kl, returns, advantage_std."""
    if ref_logp is not None:
        kl_tok = torch.where(m > 0, kl_estimate(old_logp, ref_logp, kl_estimator), torch.zeros(()))
    else:
        kl_tok = torch.zeros_like(old_logp)
    r_tok = token_rewards(rewards.to(old_logp.dtype), m, kl_tok, beta)  # (B, T)
    adv, ret = gae(r_tok, old_values, m, gamma, lam)  # (B, T) each
    if whiten_advantages:
        adv = whiten(adv, m, batch=batch)  # the mean and std of the whole batch's tokens
    stats["kl"] = (kl_tok * m).sum(dim=1)  # (B,)
    stats["returns"] = rewards.to(old_logp.dtype) - beta * stats["kl"]  # (B,)
    every = valid_values(batch, adv, m)  # (n,) the advantages of the whole batch's tokens
    stats["advantage_std"] = every.std().item() if every.numel() > 1 else 0.0
    return adv, ret


def ppo_update(policy_logp: Callable[[], Tensor], critic_values: Callable[[], Tensor], rewards: Tensor,
               mask: Tensor, apply: Callable[[Tensor], float | None], *, ref_logp: Tensor | None = None,
               beta: float = 0.0, kl_estimator: str = "k1", epochs: int = 2, clip_range: float = 0.2,
               value_clip_range: float = 0.2, gamma: float = 1.0, lam: float = 0.95,
               whiten_advantages: bool = True, aggregation: str = "sum", batch: Batch = LOCAL) -> dict:
    """`epochs` PPO passes over one batch of B completions. Returns detached diagnostics.

    policy_logp(): (B, T) log π_θ of the sampled tokens, with grad (the policy's forward pass).
    critic_values(): (B, T) V_φ(s_t), with grad. rewards: (B,) sequence rewards. mask: (B, T).
    apply(loss): backpropagates `loss` and steps the optimisers of policy and critic; returns the
    gradient norm, or None if the update was refused (non-finite), which ends the passes.
    The first pass also supplies π_old and V_old (see the module docstring).
    batch: the B rows are this process's part of a batch split across processes (core.split; default
    LOCAL: the whole batch). `apply` must then sum the gradients over the processes, and refuse in all if
    it refuses in one.
    Returned: kl (B,) Σ_t k_t under π_old, returns (B,) r − β·Σ_t k_t (this process's rows), and, over
    the whole batch, the policy loss, value loss, clip fraction, approximate KL(π_old ‖ π_θ) of the last
    pass, the std of the advantages; the grad norms and the passes done.
    """
    check_positive_int(epochs, "epochs")
    check_tensor(rewards, "rewards", ndim=1, floating=True, finite=True)
    stats: dict = {"grad_norms": [], "epochs_done": 0}
    old_logp = old_values = adv = ret = None
    m = None
    for epoch in range(epochs):
        logp = policy_logp()  # (B, T), with grad
        values = critic_values()  # (B, T), with grad
        if epoch == 0:
            m = check_mask(mask, logp)
            old_logp, old_values = logp.detach(), values.detach()
            adv, ret = _targets(old_logp, old_values, rewards, m, ref_logp, beta, kl_estimator, gamma, lam,
                                whiten_advantages, batch, stats)
        pg_loss, clip_frac = clipped_surrogate(logp, old_logp, adv, m, clip_range, aggregation, batch)  # s_r · L_r
        v_loss = clipped_value_loss(values, old_values, ret, m, value_clip_range, batch)
        grad_norm = apply(pg_loss + v_loss)
        with torch.no_grad():  # mean_t log π_old/π_θ over the whole batch's tokens
            approx_kl = (batch.total(((old_logp - logp.detach()) * m).sum()) / batch.total(m.sum())).item()
        stats.update(pg_loss=batch.total(pg_loss.detach()).item(), value_loss=batch.total(v_loss.detach()).item(),
                     clip_fraction=clip_frac.item(), approx_kl=approx_kl)
        if grad_norm is None:
            break
        stats["grad_norms"].append(grad_norm)
        stats["epochs_done"] = epoch + 1
    return stats
