r"""One unlucky batch: a reward function that, at one training step, pays one sample a huge reward.

    r'_i = r_i                      every call but the `at_call`-th
    r'_j = value                    at the `at_call`-th call, for the sample j that earned least
                                    (a rare, huge reward for a bad answer: a reward-model glitch)

Wrap any toy reward and hand it to `toy.train.train_toy` (which calls its reward function once per
step, so call n is step n): the trainer is not touched. Lesson 04 measures what the outlier does to
the policy with and without gradient clipping.

Taught in notebooks/04_kl_and_reference.ipynb.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_positive_int
from reinforce_edu.core.credit import terminal_rewards


class OutlierReward:
    """reward_fn, except that at call number `at_call` (1-based) one sample is paid `value` instead.

    The sample is `row`, or with row=None the one with the lowest return (the first such); `hit` records it.
    """

    def __init__(self, reward_fn: Callable, at_call: int, value: float = 100.0, row: int | None = None) -> None:
        if not callable(reward_fn):
            raise TypeError(f"reward_fn must be callable, got {type(reward_fn).__name__}")
        self.reward_fn = reward_fn
        self.at_call = check_positive_int(at_call, "at_call")
        self.value = float(value)
        self.row = None if row is None else check_positive_int(row, "row", minimum=0)
        self.calls = 0
        self.hit: int | None = None

    def __call__(self, task, prompt_ids: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        rewards = self.reward_fn(task, prompt_ids, tokens, mask)  # (B,) or (B, T)
        self.calls += 1
        if self.calls != self.at_call:
            return rewards
        returns = rewards if rewards.dim() == 1 else rewards.sum(1)  # (B,)
        row = int(returns.argmin()) if self.row is None else self.row
        if row >= rewards.shape[0]:
            raise ValueError(f"row={row} is outside the batch of {rewards.shape[0]} samples")
        self.hit = row
        rewards = rewards.clone()
        if rewards.dim() == 1:
            rewards[row] = self.value
        else:  # per-token rewards: the row earns `value` in total, paid at its last token
            one = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
            one[row] = 1.0
            rewards[row] = 0.0
            rewards = rewards + self.value * terminal_rewards(one, mask)
        return rewards
