r"""The REINFORCE training loop on the toy sequence task: sample, score, one loss, one step.

    for step in range(steps):
        batch   = π_θ.sample(prompts, k)                        # B = P·k completions
        r       = reward_fn(batch)                              # (B,) or (B, T)
        out     = reinforce_loss(log π_θ(batch), r, mask, ref_logp=log π_ref(batch), ...)
        θ      ← θ − lr · Adam(clip(∇ out.loss))          (or plain SGD: optimizer="sgd")
        baseline.update(out.returns.view(P, k))                 # after the step

The same `reinforce_loss` and baselines serve the bandit, this task and the LLM trainer.
Taught in notebooks/03_credit_assignment.ipynb and notebooks/04_kl_and_reference.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from reinforce_edu.core._checks import check_choice, check_positive_int
from reinforce_edu.core.baselines import Baseline, LeaveOneOutBaseline
from reinforce_edu.core.losses import reinforce_loss
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask


@dataclass
class ToyTrainConfig:
    """Settings of `train_toy`."""

    steps: int = 150
    """number of policy updates"""
    k: int = 8
    """completions sampled per prompt per step (B = P·k)"""
    lr: float = 0.01
    """learning rate of the optimiser"""
    optimizer: str = "adam"
    """"adam" (torch.optim.Adam) or "sgd" (plain gradient steps: no per-coordinate normalisation)"""
    max_grad_norm: float = 1.0
    """clip the gradient to this global L2 norm (the seed text: 'essential to prevent instability'); 0 turns clipping off"""
    eval_every: int = 10
    """evaluate the `metrics` every this many steps (and at the end)"""
    seed: int = 0
    """seed of the sampling generator"""


def train_toy(policy: ToyPolicy, task: ToyTask, reward_fn: Callable, config: ToyTrainConfig | None = None, *,
              ref: ToyPolicy | None = None, baseline: Baseline | None = None,
              metrics: dict[str, Callable[[ToyPolicy], float]] | None = None, **loss_kwargs) -> dict[str, list]:
    """Train `policy` in place with REINFORCE; return the history {"step": [...], metric: [...]}.

    reward_fn(task, prompt_ids, tokens, mask) -> (B,) or (B, T). `loss_kwargs` go to
    `reinforce_loss` (beta, kl_estimator, kl_placement, credit, gamma, aggregation, ...).
    `ref` (frozen) supplies ref_logp. `baseline` defaults to leave-one-out within each prompt.
    `metrics` maps a name to f(policy) -> float, evaluated without gradient (e.g. exact values
    from a `toy.enumeration.Enumeration`); the sampled batches' mean "batch_reward", "batch_length" and "batch_kl"
    (averaged since the previous evaluation) are always recorded.
    """
    cfg = config or ToyTrainConfig()
    check_positive_int(cfg.steps, "steps")
    baseline = LeaveOneOutBaseline() if baseline is None else baseline
    metrics = metrics or {}
    gen = torch.Generator().manual_seed(cfg.seed)
    check_choice(cfg.optimizer, "optimizer", ("adam", "sgd"))
    optimiser = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD
    opt = optimiser(policy.parameters(), lr=cfg.lr, foreach=True)
    prompts = torch.arange(task.n_prompts)
    reserved = ("step", "batch_reward", "batch_length", "batch_kl")
    clash = [n for n in metrics if n in reserved]
    if clash:
        raise ValueError(f"metrics names {clash} are reserved; pick other names than {reserved}")
    hist: dict[str, list] = {n: [] for n in reserved} | {n: [] for n in metrics}
    window: list[tuple[float, float, float]] = []

    def record(step: int) -> None:
        hist["step"].append(step)
        for j, name in enumerate(reserved[1:]):
            hist[name].append(sum(w[j] for w in window) / max(len(window), 1))
        with torch.no_grad():
            for name, f in metrics.items():
                hist[name].append(float(f(policy)))
        window.clear()

    record(0)
    for step in range(1, cfg.steps + 1):
        batch = policy.sample(prompts, cfg.k, generator=gen)
        rewards = reward_fn(task, batch.prompt_ids, batch.tokens, batch.mask)  # (B,) or (B, T)
        logp = policy.log_probs(batch.prompt_ids, batch.tokens)  # (B, T)
        ref_logp = None
        if ref is not None:
            with torch.no_grad():
                ref_logp = ref.log_probs(batch.prompt_ids, batch.tokens)
        out = reinforce_loss(logp, rewards, batch.mask, ref_logp=ref_logp, baseline=baseline,
                             group_size=cfg.k, prompts=prompts, **loss_kwargs)
        opt.zero_grad()
        out.loss.backward()
        if cfg.max_grad_norm > 0:  # 0 turns clipping off (as in TrainConfig), not every gradient to zero
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        opt.step()
        baseline.update(out.returns.view(task.n_prompts, cfg.k), prompts)
        seq_r = rewards if rewards.dim() == 1 else rewards.sum(1)
        window.append((float(seq_r.mean()), float(out.lengths.mean()), float(out.kl.mean())))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            record(step)
    return hist
