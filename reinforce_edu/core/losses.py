r"""The REINFORCE loss: one function for the bandit (T = 1), the toy sequences and the LLM.

Objective (KL-regularised, as in RLHF), for a prompt x and a completion y ∼ π_θ(·|x):

    J_β(θ) = E_y[ r(x, y) ] − β·KL(π_θ(·|x) ‖ π_ref(·|x))

Its gradient, using ∇KL = E_y[(log π_θ(y) − log π_ref(y)) ∇log π_θ(y)] (the extra E[∇log π_θ] is 0):

    ∇J_β = E_y[ (R(x, y) − b) Σ_t ∇log π_θ(y_t|x, y_<t) ],   R = r − β·Σ_t k1_t,   k1_t = log π_θ(y_t) − log π_ref(y_t)

R must be a *constant* for autograd: the KL folded into the return is detached.
`reinforce_loss` is the surrogate whose gradient is that estimate:

    L(θ) = Σ_{i,t} w_it · ( −stopgrad(A_it) · log π_θ(y_it) )   [+ β Σ_{i,t} w_it k_it  if kl_placement="loss"]

    A_it = R_i − b_i                      credit="sequence"
    A_it = G_it − b_i,  G_it = Σ_{s≥t} γ^{s−t} r'_is   credit="token" (r'_it = r_it − β·k_it, detached)

with b_i from a `reinforce_edu.core.baselines.Baseline` called on the grouped returns R.view(P, k)
(with credit="token" and token_baseline="position", b_it = the baseline called on G_{·t}.view(P, k)
instead: a baseline of the reward still to come), and w_it the aggregation weights of `reinforce_edu.core.credit` ("sum", "seq_mean", "token_mean",
"constant"). With credit="token" and γ = 1, A_it is the sequence advantage minus the rewards
already paid before t (which a token cannot influence).

The caller updates a stateful baseline *after* the step:

    out = reinforce_loss(logp, rewards, mask, ref_logp=ref, beta=0.05, baseline=bl, group_size=k)
    out.loss.backward(); optimizer.step()
    bl.update(out.returns.view(P, k), prompts)

`seed_reinforce_loss` keeps the seed text's version, with its two faults, to measure them:
(a) kl = logp − logp_ref is not detached inside the advantage, so its gradient gains
+β·(1/B) Σ_i log π(y_i) ∇log π(y_i); (b) the batch-mean baseline includes the sample itself,
shrinking the expected gradient by (1 − 1/n).

GRPO's normalisation (Shao et al., 2024) divides each advantage by the spread of its group's returns,
`advantage_scale="group_std"` (with the self-inclusive group mean as baseline, `BatchMeanBaseline(per_prompt=True)`):

    A_ij = (R_ij − mean_l R_il) / (std_l R_il + ε)        std: the unbiased sample std of the k returns of prompt i

It rescales each prompt's share of the gradient by 1/std_i: prompts whose samples all score alike
(too easy or too hard) are weighted up, so the estimate is no longer the gradient of J_β (Liu et al.,
2025, "Dr. GRPO"). "batch_std" divides by the std of all B returns instead (one scalar: no per-prompt
reweighting). Taught in notebooks/07_comparison.ipynb.

Only kl_placement="reward" with k1 makes the estimate unbiased for ∇J_β; "loss" adds β·Σ_t w_t k_t
to the loss, a regulariser whose gradient is *not* ∇KL (lesson 04 measures by how much).

Taught in notebooks/03_credit_assignment.ipynb (credit, aggregation) and
notebooks/04_kl_and_reference.ipynb (KL, the seed's faults).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_choice, check_nonnegative, check_positive_int, check_tensor
from reinforce_edu.core.baselines import Baseline, NoBaseline
from reinforce_edu.core.credit import AGGREGATIONS, CREDITS, aggregate, check_mask, reward_to_go, terminal_rewards
from reinforce_edu.core.kl import KL_ESTIMATORS, kl_estimate
from reinforce_edu.core.split import LOCAL, Batch

KL_PLACEMENTS = ("reward", "loss")
ADVANTAGE_SCALES = ("none", "group_std", "batch_std")
TOKEN_BASELINES = ("sequence", "position")


class NonFiniteLossError(ValueError):
    """`reinforce_loss` refused a NaN or infinite loss (a ValueError, so that callers catching those still do)."""


@dataclass
class LossOutput:
    """What `reinforce_loss` returns: the loss to backpropagate and detached diagnostics."""

    loss: Tensor
    """scalar, the surrogate to .backward() (policy-gradient term + KL term if kl_placement="loss")"""
    returns: Tensor
    """(B,) per-sequence return fed to the baseline: r_i − β·Σ_t k_it (kl_placement="reward") else r_i"""
    advantages: Tensor
    """(B, T) per-token advantages used (0 where mask == 0)"""
    kl: Tensor
    """(B,) per-sequence KL estimate Σ_t m_t·k_t (zeros without ref_logp)"""
    pg_loss: Tensor
    """scalar, the policy-gradient part of the loss"""
    kl_loss: Tensor
    """scalar, the β-weighted KL loss term (0 unless kl_placement="loss")"""
    baseline: Tensor
    """(B,) the baseline values b_i subtracted"""
    lengths: Tensor
    """(B,) completion lengths |y_i| = Σ_t m_it"""


def _check_rewards(rewards: object, B: int, T: int) -> Tensor:
    check_tensor(rewards, "rewards", ndim=(1, 2), floating=True)
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards contains NaN or inf values")
    if rewards.shape[0] != B or (rewards.dim() == 2 and rewards.shape[1] != T):
        raise ValueError(f"rewards must have shape ({B},) or ({B}, {T}) to match logp, got {tuple(rewards.shape)}")
    return rewards


def _check_gamma(gamma: object) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    return float(gamma)


def _check_loss_inputs(logp, rewards, mask, ref_logp, beta, kl_estimator, kl_placement, baseline, group_size, prompts,
                       credit, gamma, aggregation, token_baseline, advantage_scale, scale_eps):
    """Every check of `reinforce_loss`'s arguments, each failure a ValueError/TypeError naming the argument.

    Returns (B, T, P, k, mask as logp's dtype (B, T), rewards checked, baseline (NoBaseline for None), gamma).
    """
    check_tensor(logp, "logp", ndim=2, floating=True)
    B, T = logp.shape
    m = check_mask(mask, logp)  # (B, T)
    valid = m > 0
    if not torch.isfinite(logp[valid]).all():
        raise ValueError("logp contains NaN or inf on unmasked tokens")
    rewards = _check_rewards(rewards, B, T)
    beta = check_nonnegative(beta, "beta")
    check_choice(kl_estimator, "kl_estimator", KL_ESTIMATORS)
    check_choice(kl_placement, "kl_placement", KL_PLACEMENTS)
    check_choice(credit, "credit", CREDITS)
    check_choice(aggregation, "aggregation", AGGREGATIONS)
    check_choice(token_baseline, "token_baseline", TOKEN_BASELINES)
    check_choice(advantage_scale, "advantage_scale", ADVANTAGE_SCALES)
    scale_eps = check_nonnegative(scale_eps, "scale_eps")
    gamma = _check_gamma(gamma)
    k = check_positive_int(group_size, "group_size")
    if B % k:
        raise ValueError(f"group_size={k} must divide the batch size B={B} (B = P·k, prompt-major)")
    P = B // k
    if advantage_scale == "group_std" and k < 2:
        raise ValueError(f"advantage_scale='group_std' needs group_size >= 2 samples per prompt, got {k}")
    if advantage_scale == "batch_std" and B < 2:
        raise ValueError(f"advantage_scale='batch_std' needs a batch of at least 2 sequences, got B={B}")
    if prompts is not None:
        check_tensor(prompts, "prompts", ndim=1, integer=True)
        if prompts.shape[0] != P:
            raise ValueError(f"prompts must have shape ({P},) = (B / group_size,), got {tuple(prompts.shape)}")
    baseline = NoBaseline() if baseline is None else baseline
    if not isinstance(baseline, Baseline):
        raise TypeError(f"baseline must be a reinforce_edu.core.baselines.Baseline, got {type(baseline).__name__}")
    if ref_logp is None and beta > 0:
        raise ValueError(f"beta={beta} > 0 needs ref_logp, the (B, T) log-probs of the frozen reference")
    if ref_logp is not None:
        check_tensor(ref_logp, "ref_logp", ndim=2, floating=True)
        if ref_logp.shape != logp.shape:
            raise ValueError(f"ref_logp must have the shape of logp {tuple(logp.shape)}, got {tuple(ref_logp.shape)}")
        if ref_logp.requires_grad:
            raise ValueError("ref_logp requires grad: the reference policy must be frozen "
                             "(compute it under torch.no_grad() or from reinforce_edu.core.kl.frozen_copy)")
        if not torch.isfinite(ref_logp[valid]).all():
            raise ValueError("ref_logp contains NaN or inf on unmasked tokens")
    return B, T, P, k, m, rewards, baseline, gamma


def reinforce_loss(
    logp: Tensor,
    rewards: Tensor,
    mask: Tensor | None = None,
    *,
    ref_logp: Tensor | None = None,
    beta: float = 0.0,
    kl_estimator: str = "k1",
    kl_placement: str = "reward",
    baseline: Baseline | None = None,
    group_size: int = 1,
    prompts: Tensor | None = None,
    credit: str = "sequence",
    gamma: float = 1.0,
    aggregation: str = "sum",
    max_tokens: int | None = None,
    token_baseline: str = "sequence",
    advantage_scale: str = "none",
    scale_eps: float = 1e-4,
    batch: Batch = LOCAL,
) -> LossOutput:
    """The corrected, general REINFORCE surrogate (see the module docstring for the equations).

    logp: (B, T) log π_θ(y_t|x, y_<t) of the sampled tokens, with grad.
    rewards: (B,) sequence rewards (paid at EOS) or (B, T) per-token rewards.
    mask: (B, T) 1 on completion tokens through EOS, 0 after (None = all ones).
    ref_logp: (B, T) log π_ref of the same tokens, from a frozen model (no grad); needed if beta > 0.
    beta >= 0; kl_estimator in KL_ESTIMATORS; kl_placement "reward" (folded, detached, into the
    return) or "loss" (β·aggregated k_t added to the loss, differentiable; k3 is typical).
    baseline: a `Baseline`, called on returns.view(P, k) (pure); the caller calls
    `baseline.update(out.returns.view(P, k), prompts)` after the step. None = no baseline.
    group_size: k, with B = P·k rows prompt-major. prompts: (P,) ids (for `ValueBaseline`).
    credit: "sequence" or "token" (reward-to-go with discount gamma in [0, 1]).
    aggregation: one of AGGREGATIONS (default "sum": summed over tokens, averaged over rows — the
    policy-gradient theorem's weighting, which lesson 03 shows has no length bias; "seq_mean" is GRPO's);
    max_tokens: the constant of "constant" (default T).
    token_baseline (credit="token" only): "sequence" subtracts b_i, the baseline of the returns,
    from every G_it; "position" calls the baseline on each column G_{·t}.view(P, k), so that
    b_it tracks the reward still to come at t (e.g. leave-one-out: the mean of the other
    samples' G_jt, 0 for those already ended).
    advantage_scale: "none", "group_std" (GRPO: A / (std of the prompt's k returns + scale_eps); needs k >= 2)
    or "batch_std" (A / (std of all B returns + scale_eps)); the std is computed from the returns R, detached.
    batch: the rows are one process's part of a split batch (core.split): "batch_std" takes the std of all of them.
    The bandit is the case T = 1. Lesson 04 reads this function whole: the argument checks live in
    `_check_loss_inputs`, so what follows is the equation of the module docstring, branch by branch.
    """
    B, T, P, k, m, rewards, baseline, gamma = _check_loss_inputs(
        logp, rewards, mask, ref_logp, beta, kl_estimator, kl_placement, baseline, group_size, prompts, credit, gamma,
        aggregation, token_baseline, advantage_scale, scale_eps)
    valid = m > 0

    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    logp_m = torch.where(valid, logp, zero)  # (B, T): no gradient after EOS
    if ref_logp is not None:
        kl_tok = torch.where(valid, kl_estimate(logp_m, torch.where(valid, ref_logp, zero), kl_estimator), zero)
    else:
        kl_tok = torch.zeros_like(logp)  # (B, T)
    kl_seq = kl_tok.detach().sum(dim=1)  # (B,)
    fold = kl_placement == "reward" and beta > 0
    rewards = rewards.to(logp.dtype)

    if credit == "sequence":
        r_seq = rewards if rewards.dim() == 1 else (rewards * m).sum(dim=1)  # (B,)
        returns = (r_seq - beta * kl_seq) if fold else r_seq  # R_i, detached KL
        returns = returns.detach()
        b = baseline(returns.view(P, k), prompts).reshape(B).detach()  # (B,)
        adv = (returns - b)[:, None] * m  # (B, T): the same advantage on every token
    else:
        r_tok = terminal_rewards(rewards, m) if rewards.dim() == 1 else rewards * m  # (B, T)
        if fold:
            r_tok = r_tok - beta * kl_tok.detach()
        G = reward_to_go(r_tok.detach(), m, gamma)  # (B, T)
        first = valid.float().argmax(dim=1, keepdim=True)  # (B, 1) first completion token
        returns = G.gather(1, first).squeeze(1)  # (B,) return from the first token
        b = baseline(returns.view(P, k), prompts).reshape(B).detach()  # (B,)
        if token_baseline == "sequence":
            adv = (G - b[:, None]) * m  # (B, T)
        else:
            b_pos = torch.stack([baseline(G[:, t].reshape(P, k), prompts).reshape(B) for t in range(T)], dim=1)
            adv = (G - b_pos.detach()) * m  # (B, T)
    if advantage_scale != "none":  # GRPO: A_ij / (std_l R_il + ε)
        grouped = returns.view(P, k) if advantage_scale == "group_std" else batch.gather_rows(returns).view(1, -1)
        spread = grouped.std(dim=1, keepdim=True).expand(P, k).reshape(B)  # (B,) unbiased std of its group
        adv = adv / (spread + scale_eps)[:, None]  # (B, T)
    adv = adv.detach()

    pg_loss = aggregate(-adv * logp_m, m, aggregation, max_tokens)
    kl_loss = aggregate(beta * kl_tok, m, aggregation, max_tokens) if (kl_placement == "loss" and beta > 0) else zero
    loss = pg_loss + kl_loss
    if not torch.isfinite(loss):
        raise NonFiniteLossError("the loss is not finite (check logp/ref_logp for extreme log-ratios); "
                         "refusing to return it so that it never reaches the weights")
    return LossOutput(loss=loss, returns=returns, advantages=adv, kl=kl_seq, pg_loss=pg_loss.detach(),
                      kl_loss=kl_loss.detach(), baseline=b, lengths=m.sum(dim=1))


def seed_reinforce_loss(logp: Tensor, rewards: Tensor, ref_logp: Tensor, mask: Tensor | None = None, *,
                        beta: float = 0.05, detach_kl: bool = False, leave_one_out: bool = False) -> Tensor:
    """The seed text's `reinforce_loss`, line for line on tensors (faults kept by default).

    logp, ref_logp: (B, T) per-token (summed over the mask into sequence log-probs) or (B,).
    rewards: (B,). `detach_kl=True` fixes fault (a); `leave_one_out=True` fixes fault (b)
    (baseline = mean of the *other* B − 1 returns). With both fixes this equals
    `reinforce_loss(..., kl_estimator="k1", baseline=LeaveOneOutBaseline(), group_size=B,
    aggregation="sum")`.
    """
    check_tensor(logp, "logp", ndim=(1, 2), floating=True)
    check_tensor(ref_logp, "ref_logp", ndim=(1, 2), floating=True)
    if ref_logp.shape != logp.shape:
        raise ValueError(f"ref_logp must have the shape of logp {tuple(logp.shape)}, got {tuple(ref_logp.shape)}")
    beta = check_nonnegative(beta, "beta")
    if logp.dim() == 2:
        m = check_mask(mask, logp) > 0
        zero = torch.zeros((), dtype=logp.dtype)
        logp = torch.where(m, logp, zero).sum(dim=1)  # (B,) log π(y|x)
        ref_logp = torch.where(m, ref_logp, zero).sum(dim=1)  # (B,)
    rewards = _check_rewards(rewards, logp.shape[0], 1)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must have shape ({logp.shape[0]},), got {tuple(rewards.shape)}")
    if leave_one_out and logp.shape[0] < 2:
        raise ValueError("leave_one_out needs a batch of at least 2 sequences")

    kl = logp - ref_logp  # fault (a): not detached
    if detach_kl:
        kl = kl.detach()
    returns = rewards - beta * kl
    if leave_one_out:
        baseline = ((returns.sum() - returns) / (returns.shape[0] - 1)).detach()
    else:
        baseline = returns.mean().detach()  # fault (b): includes the sample itself
    advantages = returns - baseline
    return -(logp * advantages).mean()
