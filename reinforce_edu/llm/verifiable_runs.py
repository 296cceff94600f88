r"""Training runs on verifiable rewards, per method and seed: what lesson 08 and scripts/verifiable_run.py run.

The methods differ only in three settings of the same `reinforce_loss` (reinforce_edu.core.losses):

| method    | baseline b_ij            | advantage scale      | token weights w_it (core.credit)      | groups            |
|-----------|--------------------------|----------------------|---------------------------------------|-------------------|
| `grpo`    | mean of the group        | ÷ (std of the group + ε) | "seq_mean": 1 / (B·|y_i|)          | all               |
| `dr_grpo` | mean of the group        | none                 | "constant": 1 / (B·T_max)             | all               |
| `dapo`    | mean of the group        | ÷ (std of the group + ε) | "token_mean": 1 / Σ_j |y_j|        | zero-variance dropped |
| `rloo`    | mean of the *other* k − 1 | none                | "sum": 1 / B                          | all               |

(Liu et al. 2025, "Understanding R1-Zero-Like Training" for Dr. GRPO; Yu et al. 2025 for DAPO; Ahmadian et al.
2024 for RLOO.) `train_method` runs one (method, seed) with a reward recorder beside the trainer, so every
step also logs the mean length of its right and of its wrong answers; `correctness_matrix` samples n answers
per held-out prompt and checks them, the input of pass@k (core.passk).
Taught in notebooks/08_verifiable_rewards.ipynb.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_choice, check_positive_int
from reinforce_edu.llm.config import TrainConfig
from reinforce_edu.llm.trainer import Trainer
from reinforce_edu.llm.verifiable import correctness_reward

METHODS = {
    "grpo": dict(baseline="prompt_mean", advantage_scale="group_std", aggregation="seq_mean"),
    "dr_grpo": dict(baseline="prompt_mean", advantage_scale="none", aggregation="constant"),
    "dapo": dict(baseline="prompt_mean", advantage_scale="group_std", aggregation="token_mean",
                 group_filter="drop_zero_variance"),
    "rloo": dict(baseline="rloo", advantage_scale="none", aggregation="sum"),
}
"""The TrainConfig fields that make each method (everything else is shared)."""


class RewardRecorder:
    """A reward function that remembers the completions and rewards of every call (the trainer calls it once
    per step), so that the lengths of right and wrong answers can be read back per step."""

    def __init__(self, fn=correctness_reward) -> None:
        self.fn, self.calls = fn, []
        self.__name__ = getattr(fn, "__name__", "reward")

    def __call__(self, completions, **kwargs) -> list[float]:
        values = self.fn(completions, **kwargs)
        self.calls.append((list(completions), [float(v) for v in values]))
        return values


def lengths_by_outcome(tokenizer, completions: list[str], rewards: list[float]) -> tuple[float, float]:
    """(mean token length of the right answers (reward ≥ 1), of the wrong ones); NaN where there are none."""
    lengths = [len(ids) for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]]
    right = [n for n, r in zip(lengths, rewards) if r >= 1]
    wrong = [n for n, r in zip(lengths, rewards) if r < 1]
    return _mean_or_nan(right), _mean_or_nan(wrong)


def _mean_or_nan(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def first_last(log: list[dict], key: str, n: int = 3) -> tuple[float, float]:
    """(mean of `key` over the first n steps of a run's log, over its last n), skipping steps where it is None or
    NaN (a step with no wrong answer has no wrong-answer length); NaN where none is left."""
    check_positive_int(n, "n")
    if len(log) < n:
        raise ValueError(f"the log has {len(log)} steps, fewer than n={n}")
    values = lambda records: [r[key] for r in records if r.get(key) is not None and not math.isnan(r[key])]  # noqa: E731
    return _mean_or_nan(values(log[:n])), _mean_or_nan(values(log[-n:]))


def method_config(method: str, base: TrainConfig, seed: int) -> TrainConfig:
    """`base` with the method's settings and `seed`, writing to base.output_dir/<method>_seed<seed>."""
    check_choice(method, "method", tuple(METHODS))
    return replace(base, seed=seed, output_dir=f"{base.output_dir}/{method}_seed{seed}", **METHODS[method])


@torch.no_grad()
def correctness_matrix(trainer: Trainer, prompts: list[str], n: int, seed: int, model: str = "policy") -> Tensor:
    """(P, n) 0/1: n sampled answers per prompt from the policy (or "reference": the model before training), checked."""
    ev = trainer.evaluate(prompts, k=n, seed=seed, proxy=False, model=model)
    return torch.tensor(ev["gold_values"]).view(len(prompts), n)


def train_method(method: str, seed: int, base: TrainConfig, prompts: list[str], heldout: list[str] | None = None,
                 eval_n: int = 8, eval_seed: int = 1, before: bool = False) -> dict:
    """Train one (method, seed) from a fresh SmolLM2 (or base.model) and measure it.

    Returns {"method", "seed", "log": the trainer's records, each with length_right / length_wrong added,
    "after": (P, eval_n) correctness on `heldout` as a list (if given), "before": the same from the reference
    (if before=True)}. The trainer is returned under "trainer" (not serialisable: drop it before storing).
    """
    from reinforce_edu.llm.models import load_model
    cfg = method_config(method, base, seed)
    policy, tok = load_model(cfg.model)
    recorder = RewardRecorder()
    trainer = Trainer(cfg, policy=policy, tokenizer=tok, reward_fn=recorder, gold_fn=correctness_reward,
                      prompts=prompts)
    out = {"method": method, "seed": seed, "trainer": trainer}
    if heldout is not None and before:
        out["before"] = correctness_matrix(trainer, heldout, eval_n, eval_seed, model="reference").tolist()
    log = trainer.train()
    for rec, (completions, rewards) in zip(log, recorder.calls):
        rec["length_right"], rec["length_wrong"] = lengths_by_outcome(tok, completions, rewards)
    out["log"] = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                  for r in log]
    if heldout is not None:
        out["after"] = correctness_matrix(trainer, heldout, eval_n, eval_seed).tolist()
    return out
