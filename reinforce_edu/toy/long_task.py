r"""A long toy task (T ≥ 32) whose reward is revealed in blocks, and the tools to measure on it.

At T = 32 the completions can no longer be enumerated (4^32 of them), so J and the gradient
variance are *sampled*, each with its standard error. The reward is partial and delayed: the
match reward r_t = 1[y_t = s_t]/|s| of `toy.rewards` is summed over blocks of `every` tokens and
paid at the block's last token (or at the completion's last token if it stops inside the block):

    r^block_t = Σ_{u ∈ block(t)} r_u   if t = min(end of block(t), |y|),   else 0

    Σ_t r^block_t = Σ_t r_t = match_reward            (the same return, revealed later)

Under sequence credit every token gets the whole return R; under token credit (reward-to-go)
token t gets G_t = Σ_{s ≥ t} r^block_s, which drops the blocks already paid before t.

Taught in notebooks/03_credit_assignment.ipynb.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_positive_int, check_tensor
from reinforce_edu.core.per_sample import per_sample_grads
from reinforce_edu.core.significance import mean_se  # noqa: F401  (lesson 03 takes it from here with the task)
from reinforce_edu.toy.rewards import match_reward, match_token_rewards
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask, demonstrations, warm_up


def long_task(length: int = 32, n_prompts: int = 4, vocab: str = "abcd", seed: int = 0) -> ToyTask:
    """A ToyTask with max_len = `length` whose P targets are random strings of length − 1 (then EOS)."""
    check_positive_int(length, "length", minimum=2)
    check_positive_int(n_prompts, "n_prompts")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, len(vocab), (n_prompts, length - 1), generator=g)  # (P, T − 1)
    targets = tuple("".join(vocab[i] for i in row.tolist()) for row in ids)
    return ToyTask(vocab=vocab, max_len=length, targets=targets)


def warm_policy(task: ToyTask, hidden: int = 16, seed: int = 0) -> ToyPolicy:
    """The starting policy of the long task: a short SFT on noisy demonstrations (60% of tokens re-drawn)."""
    policy = ToyPolicy(task, hidden=hidden, seed=seed)
    warm_up(policy, demonstrations(task, 4, noise=0.6, seed=seed), steps=20, lr=0.1)
    return policy


def block_rewards(task: ToyTask, prompt_ids: Tensor, tokens: Tensor, mask: Tensor, *, every: int = 8) -> Tensor:
    """The match rewards of each block of `every` tokens, paid at the block's last token: (B, T).

    A completion that stops inside a block is paid that block at its last token (EOS).
    """
    check_positive_int(every, "every")
    dense = match_token_rewards(task, prompt_ids, tokens, mask)  # (B, T)
    B, T = dense.shape
    last = (mask.sum(1).long() - 1).clamp(min=0)  # (B,) index of the last token
    block_end = (torch.arange(T) // every + 1) * every - 1  # (T,) last index of each position's block
    pay_at = torch.minimum(block_end[None, :].expand(B, T), last[:, None])  # (B, T)
    return torch.zeros_like(dense).scatter_add_(1, pay_at, dense)


def sampled_objective(policy: ToyPolicy, n: int, seed: int, reward_fn=match_reward) -> tuple[float, float]:
    """J = E_x E_y[R(x, y)] from n sampled completions per prompt: (mean, standard error).

    The SE is over prompts' samples pooled: std of the B = P·n rewards / sqrt(B) (the prompts are
    fixed and equally weighted, so this slightly overstates the SE; a conservative figure).
    """
    check_positive_int(n, "n", minimum=2)
    task = policy.task
    with torch.no_grad():
        b = policy.sample(torch.arange(task.n_prompts), n, generator=torch.Generator().manual_seed(seed))
        r = reward_fn(task, b.prompt_ids, b.tokens, b.mask)
        r = r if r.dim() == 1 else r.sum(1)  # (B,)
    return float(r.mean()), float(r.std() / math.sqrt(r.numel()))


def credit_gradients(policy: ToyPolicy, prompt_ids: Tensor, tokens: Tensor, mask: Tensor,
                     advantages: Tensor) -> Tensor:
    """Per-sample ascent directions g_i = Σ_t m_it A_it ∇_θ log π_θ(y_it | x_i, y_i,<t): (N, D).

    advantages: (N, T) (sequence credit: the same A_i on every token), treated as constants.
    """
    check_tensor(advantages, "advantages", ndim=2, floating=True, finite=True)
    if advantages.shape != tokens.shape:
        raise ValueError(f"advantages must have the shape of tokens {tuple(tokens.shape)}, got "
                         f"{tuple(advantages.shape)}")

    def sample_loss(out_fn, prompt: Tensor, toks: Tensor, m: Tensor, adv: Tensor) -> Tensor:
        logits = out_fn(prompt[None], toks[None])[0]  # (T, V)
        logp = torch.log_softmax(logits, -1).gather(-1, toks[:, None]).squeeze(-1)  # (T,)
        return (m * adv * logp).sum()  # its gradient is g_i (ascent)

    return per_sample_grads(policy, sample_loss, prompt_ids, tokens, mask.float(), advantages.detach())


def grouped_total_variance(g: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    r"""tr Cov of per-sample vectors g (N, D) as the mean of d_i = ‖g_i − ḡ‖²·N/(N − 1), with its SE.

    Samples of one group (a prompt's k completions sharing a leave-one-out baseline) are not
    independent, so the SE is taken over the N / group_size group means of d_i. Returns
    (per-group means (N/group_size,), scalar tr Cov); pass the group means of two estimators on the
    same samples to `paired_se` for the SE of their difference.
    """
    check_tensor(g, "g", ndim=2, floating=True, finite=True)
    check_positive_int(group_size, "group_size")
    N = g.shape[0]
    if N % group_size or N // group_size < 2:
        raise ValueError(f"group_size={group_size} must divide N={N} into at least 2 groups")
    g = g.double()
    d = ((g - g.mean(0)) ** 2).sum(1) * N / (N - 1)  # (N,)
    groups = d.view(-1, group_size).mean(1)  # (N / group_size,)
    return groups, groups.mean()


