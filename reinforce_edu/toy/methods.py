r"""Six policy-gradient methods on the toy sequence task, at the same sample budget, scored exactly.

Lesson 07's comparison in miniature, where J_β, the KL and the optimum are exact sums over every
completion (`toy.enumeration`). Every method samples B completions per step — P groups of k, every
prompt of the task B / (n_prompts·k) times — for the same number of steps at the same learning rate:

| method         | k | baseline b_ij                   | advantage                   | update per batch   |
|----------------|---|---------------------------------|-----------------------------|--------------------|
| `vanilla_pg`   | 1 | 0                               | R                           | one Adam step      |
| `running_mean` | 1 | EMA of past returns             | R − b                       | one Adam step      |
| `rloo_k2`      | 2 | the other sample of the prompt  | R − b                       | one Adam step      |
| `rloo_k4`      | 4 | mean of the other 3             | R − b                       | one Adam step      |
| `grpo`         | 4 | mean of the 4, self included    | (R − mean) / (std + ε)      | one Adam step      |
| `ppo`          | 1 | critic V_φ(s_t), GAE            | whitened Â_t, clipped ratio | `ppo_epochs` steps |

R = r − β·Σ_t k1_t, the KL to π_ref = the initial policy (frozen), as in lesson 07's trainer. PPO's
critic `ToyCritic` is a second copy of the policy's GRU with a scalar head started at zero — the
toy's "2× model" — trained by `core.ppo.ppo_update`, the same update the LLM's PPO runs.
`run_toy_method` returns the exact final J_β = E[r] − β·KL(π‖π_ref), E[r] and KL.

Taught in notebooks/07_comparison.ipynb; `scripts/toy_ordering.py` runs it at full size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from reinforce_edu.core._checks import check_choice, check_nonnegative, check_positive_int
from reinforce_edu.core.baselines import make_baseline
from reinforce_edu.core.kl import frozen_copy
from reinforce_edu.core.losses import reinforce_loss
from reinforce_edu.core.ppo import ppo_update
from reinforce_edu.toy.enumeration import Enumeration
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask

TOY_METHODS: dict[str, dict] = {
    "vanilla_pg": dict(k=1, baseline="none"),
    "running_mean": dict(k=1, baseline="running_mean"),
    "rloo_k2": dict(k=2, baseline="rloo"),
    "rloo_k4": dict(k=4, baseline="rloo"),
    "grpo": dict(k=4, baseline="prompt_mean", advantage_scale="group_std"),
    "ppo": dict(k=1, baseline="none", ppo=True),
}
"""What defines each method (everything else in `ToyMethodConfig` is shared)."""

TOY_LABELS = {"vanilla_pg": "vanilla PG", "running_mean": "REINFORCE + running mean", "rloo_k2": "RLOO k=2",
              "rloo_k4": "RLOO k=4", "grpo": "GRPO (std-normalised)", "ppo": "PPO (critic)"}


@dataclass
class ToyMethodConfig:
    """Settings shared by every method of `run_toy_method`."""

    steps: int = 60
    """number of sampled batches (PPO takes `ppo_epochs` optimiser steps on each)"""
    samples_per_step: int = 16
    """B, completions sampled per step, the same for every method (a multiple of n_prompts·4)"""
    lr: float = 0.01
    """Adam learning rate of the policy"""
    beta: float = 0.05
    """β of J_β = E[r] − β·KL(π ‖ π_ref); the KL (k1) is folded into the return"""
    max_grad_norm: float = 1.0
    """clip each model's gradient to this L2 norm; 0 turns clipping off"""
    ppo_epochs: int = 2
    """PPO: optimiser steps on each batch"""
    clip_range: float = 0.2
    """PPO: ε of the clipped ratio (and of the clipped value loss)"""
    gae_lambda: float = 0.95
    """PPO: λ of GAE (γ = 1)"""
    critic_lr: float = 0.03
    """PPO: Adam learning rate of the critic"""
    seed: int = 0
    """seed of the sampling generator"""


class ToyCritic(nn.Module):
    """V_φ(s_t) for s_t = (x, y_<t): a copy of the policy's GRU (own weights) and a linear head started at 0."""

    def __init__(self, policy: ToyPolicy) -> None:
        super().__init__()
        self.body = copy.deepcopy(policy)
        for p in self.body.head.parameters():  # the body's token head is unused: V reads the hidden state
            p.requires_grad_(False)
        self.value_head = nn.Linear(self.body.head.in_features, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, prompt_ids: Tensor, tokens: Tensor) -> Tensor:
        """V of the state before each token. prompt_ids: (B,), tokens: (B, T) -> (B, T)."""
        B, T = tokens.shape
        bos = torch.full((B, 1), self.body.task.vocab_size, dtype=tokens.dtype)
        inputs = torch.cat([bos, tokens[:, :-1]], dim=1)  # (B, T): BOS, y_1..y_{T−1}
        h = self.body.prompt_emb(prompt_ids)  # (B, H)
        states = []
        for t in range(T):
            h, _ = self.body.step(h, inputs[:, t])  # h_t: the state whose logits predict y_t
            states.append(h)
        return self.value_head(torch.stack(states, dim=1)).squeeze(-1)  # (B, T)


def _check_config(name: str, task: ToyTask, cfg: ToyMethodConfig) -> int:
    check_choice(name, "method", tuple(TOY_METHODS))
    if not isinstance(cfg, ToyMethodConfig):
        raise TypeError(f"config must be a ToyMethodConfig, got {type(cfg).__name__}")
    check_positive_int(cfg.steps, "steps")
    B = check_positive_int(cfg.samples_per_step, "samples_per_step")
    if B % (task.n_prompts * 4):
        raise ValueError(f"samples_per_step={B} must be a multiple of n_prompts·4 = {task.n_prompts * 4}, so that "
                         "every method (k = 1, 2, 4) sees each prompt equally often")
    for field in ("lr", "critic_lr"):
        if not getattr(cfg, field) > 0:
            raise ValueError(f"{field} must be > 0, got {getattr(cfg, field)!r}")
    check_nonnegative(cfg.beta, "beta")
    check_nonnegative(cfg.max_grad_norm, "max_grad_norm")
    return TOY_METHODS[name]["k"]


def _stepper(groups: list[tuple[nn.Module, torch.optim.Optimizer]], max_norm: float) -> Callable[[Tensor], float | None]:
    """apply(loss): backward, clip each model's gradient, step every optimiser; None (nothing done) if not finite."""

    def apply(loss: Tensor) -> float | None:
        if not torch.isfinite(loss):
            return None
        for _, opt in groups:
            opt.zero_grad()
        loss.backward()
        norms = [torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm if max_norm > 0 else float("inf"))
                 for m, _ in groups]
        if not all(torch.isfinite(n) for n in norms):
            return None
        for _, opt in groups:
            opt.step()
        return float(norms[0])

    return apply


def train_toy_method(name: str, policy: ToyPolicy, task: ToyTask, reward_fn: Callable,
                     config: ToyMethodConfig | None = None, ref: ToyPolicy | None = None) -> ToyPolicy:
    """Train `policy` in place with method `name` (a key of TOY_METHODS); return it.

    reward_fn(task, prompt_ids, tokens, mask) -> (B,) sequence rewards. ref: the frozen π_ref
    (default: a frozen copy of `policy` as it starts).
    """
    cfg = config or ToyMethodConfig()
    k = _check_config(name, task, cfg)
    spec = TOY_METHODS[name]
    ref = frozen_copy(policy) if ref is None else ref
    B, P = cfg.samples_per_step, task.n_prompts
    groups = torch.arange(P).repeat(B // (P * k))  # (B / k,) each prompt B / (P·k) times
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    if spec.get("ppo"):
        critic = ToyCritic(policy)
        copt = torch.optim.Adam([p for p in critic.parameters() if p.requires_grad], lr=cfg.critic_lr)
        apply = _stepper([(policy, opt), (critic, copt)], cfg.max_grad_norm)
    else:
        baseline = make_baseline(spec["baseline"])
        apply = _stepper([(policy, opt)], cfg.max_grad_norm)
    for _ in range(cfg.steps):
        batch = policy.sample(groups, k, generator=gen)
        r = reward_fn(task, batch.prompt_ids, batch.tokens, batch.mask)  # (B,)
        with torch.no_grad():
            ref_logp = ref.log_probs(batch.prompt_ids, batch.tokens)  # (B, T)
        if spec.get("ppo"):
            ppo_update(lambda: policy.log_probs(batch.prompt_ids, batch.tokens),
                       lambda: critic(batch.prompt_ids, batch.tokens), r, batch.mask, apply,
                       ref_logp=ref_logp, beta=cfg.beta, epochs=cfg.ppo_epochs, clip_range=cfg.clip_range,
                       value_clip_range=cfg.clip_range, gamma=1.0, lam=cfg.gae_lambda, aggregation="sum")
            continue
        logp = policy.log_probs(batch.prompt_ids, batch.tokens)  # (B, T)
        out = reinforce_loss(logp, r, batch.mask, ref_logp=ref_logp, beta=cfg.beta, baseline=baseline,
                             group_size=k, prompts=groups, aggregation="sum",
                             advantage_scale=spec.get("advantage_scale", "none"))
        apply(out.loss)
        baseline.update(out.returns.view(-1, k), groups)
    return policy


def exact_scores(policy: ToyPolicy, ref: ToyPolicy, enum: Enumeration, rewards: Tensor, beta: float) -> dict:
    """Exact {"J": E[r] − β·KL, "reward": E[r], "kl": KL(π ‖ π_ref)} by enumeration. rewards: (P, N)."""
    with torch.no_grad():
        lp, ref_lp = enum.seq_logprobs(policy), enum.seq_logprobs(ref)  # (P, N) each
        reward = float(enum.expectation(lp, rewards))
        kl = float(enum.expectation(lp, lp - ref_lp))
    return {"J": reward - beta * kl, "reward": reward, "kl": kl}


def run_toy_method(name: str, init: ToyPolicy, task: ToyTask, reward_fn: Callable, enum: Enumeration,
                   config: ToyMethodConfig | None = None) -> dict:
    """Train a copy of `init` (also π_ref) with method `name`; return its exact final scores (`exact_scores`)."""
    check_choice(name, "method", tuple(TOY_METHODS))
    cfg = config or ToyMethodConfig()
    ref = frozen_copy(init)
    policy = train_toy_method(name, copy.deepcopy(init), task, reward_fn, cfg, ref=ref)
    return exact_scores(policy, ref, enum, enum.rewards(reward_fn), cfg.beta)
