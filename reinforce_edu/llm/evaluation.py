"""Evaluating a policy: mean gold (and proxy) reward of fresh samples, with standard errors.

    mean = (1/n) Σ_i r_i,    SE = std(r) / √n    over the n = P·k completions of the given prompts

Sampling uses a fixed seed, so two evaluations of the same weights give the same numbers.
Taught in notebooks/06_rlhf_small_llm.ipynb (before/after training, on held-out prompts).
"""

from __future__ import annotations

import math

import torch

from reinforce_edu.core._checks import check_choice
from reinforce_edu.llm.rewards import compute_rewards
from reinforce_edu.llm.sampling import check_prompts, sample
from reinforce_edu.perf.speed import attention_kernel


@torch.no_grad()
def evaluate(trainer, prompts: list[str], k: int = 1, seed: int = 0, *, max_new_tokens: int | None = None,
             proxy: bool = True, model: str = "policy") -> dict:
    """Mean gold (and proxy) reward of k samples per prompt from a `Trainer`'s policy, with SEs, and the samples.

    model: "policy" (as trained so far) or "reference" (the policy before training). proxy=False skips
    the reward model. Returns gold, gold_se, gold_values, length, completions (and proxy, proxy_se,
    proxy_values). Every process of a multi-process run evaluates every prompt.
    """
    prompts = check_prompts(prompts)
    check_choice(model, "model", ("policy", "reference"))
    cfg = trainer.config
    sampler = trainer.policy if model == "policy" else trainer.ref
    with trainer.autocast(), attention_kernel(sampler, trainer.sample_attention):
        r = sample(sampler, trainer.tokenizer, prompts, k, max_new_tokens or cfg.max_new_tokens,
                   temperature=cfg.temperature, seed=seed)
    if proxy:
        proxy_r, gold = trainer.score(r)
    else:
        proxy_r, gold = None, compute_rewards(trainer.gold_fn, r.completions, r.repeated_prompts)
    n = gold.numel()
    out = {"gold": gold.mean().item(), "gold_se": (gold.std() / math.sqrt(n)).item() if n > 1 else float("nan"),
           "length": r.lengths.float().mean().item(), "completions": r.completions, "gold_values": gold.tolist()}
    if proxy_r is not None:
        out.update(proxy=proxy_r.mean().item(), proxy_values=proxy_r.tolist(),
                   proxy_se=(proxy_r.std() / math.sqrt(n)).item() if n > 1 else float("nan"))
    return out
