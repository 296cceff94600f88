r"""Rewards for the toy sequence task: terminal, dense, delayed, length-neutral and hackable.

Every reward has the signature ``f(task, prompt_ids (B,), tokens (B, T), mask (B, T))`` and
returns (B,) sequence rewards or (B, T) per-token rewards (zero after EOS). With s = the
target of the prompt followed by EOS (|s| tokens):

| reward                 | shape  | definition                                                      |
|------------------------|--------|-----------------------------------------------------------------|
| `match_token_rewards`  | (B, T) | r_t = 1[y_t = s_t] / |s| for t < |s| (dense)                    |
| `match_reward`         | (B,)   | Σ_t r_t: the fraction of the target reproduced (terminal); 1 iff y = s |
| `delayed_rewards`      | (B, T) | r_t as above for t ≥ 2, and 1[y_1 = s_1] paid at the *last* token |
| `first_token_reward`   | (B,)   | 1[y_1 = s_1]: indifferent to everything after the first token  |
| `hackable_reward`      | (B,)   | match_reward + pay · #{t : y_t = "a"}: pays for repeating one token |

`match_reward` is the gold score against which the hackable proxy is judged.

Taught in notebooks/03_credit_assignment.ipynb and notebooks/04_kl_and_reference.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_nonnegative, check_tensor
from reinforce_edu.core.credit import terminal_rewards
from reinforce_edu.toy.sequences import ToyTask


def _check(task: ToyTask, prompt_ids: Tensor, tokens: Tensor, mask: Tensor) -> None:
    if not isinstance(task, ToyTask):
        raise TypeError(f"task must be a ToyTask, got {type(task).__name__}")
    check_tensor(prompt_ids, "prompt_ids", ndim=1, integer=True)
    check_tensor(tokens, "tokens", ndim=2, integer=True)
    if tokens.shape[0] != prompt_ids.shape[0] or mask.shape != tokens.shape:
        raise ValueError(f"prompt_ids (B,), tokens (B, T) and mask (B, T) must agree, got "
                         f"{tuple(prompt_ids.shape)}, {tuple(tokens.shape)}, {tuple(mask.shape)}")


def match_token_rewards(task: ToyTask, prompt_ids: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """Dense per-token reward r_t = 1[y_t = s_t] / |s| on the target's positions: (B, T)."""
    _check(task, prompt_ids, tokens, mask)
    target = task.target_tokens()[prompt_ids]  # (B, T)
    n = torch.tensor([len(s) + 1 for s in task.targets], dtype=torch.float32)[prompt_ids]  # (B,) |s|
    on_target = torch.arange(tokens.shape[1])[None, :] < n[:, None]  # (B, T)
    return ((tokens == target) & on_target).float() * mask / n[:, None]


def match_reward(task: ToyTask, prompt_ids: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """Terminal reward: the fraction of the target reproduced, in [0, 1]: (B,)."""
    return match_token_rewards(task, prompt_ids, tokens, mask).sum(1)


def delayed_rewards(task: ToyTask, prompt_ids: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """Dense match rewards from the 2nd token on, plus 1[y_1 = s_1] paid at the last token: (B, T)."""
    r = match_token_rewards(task, prompt_ids, tokens, mask).clone()
    r[:, 0] = 0.0  # the first token is not paid when it is written ...
    key = task.target_tokens()[prompt_ids, 0]  # (B,)
    bonus = (tokens[:, 0] == key).float()
    return r + terminal_rewards(bonus, mask)  # ... but at the end of the sequence


def first_token_reward(task: ToyTask, prompt_ids: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """1[y_1 = s_1]: a reward that does not care how long the completion is: (B,)."""
    _check(task, prompt_ids, tokens, mask)
    return (tokens[:, 0] == task.target_tokens()[prompt_ids, 0]).float()


def hackable_reward(task: ToyTask, prompt_ids: Tensor, tokens: Tensor, mask: Tensor, *,
                    pay: float = 0.25, token: str = "a") -> Tensor:
    """A flawed proxy: match_reward + pay · (number of `token` in the completion): (B,)."""
    check_nonnegative(pay, "pay")
    if token not in task.vocab:
        raise ValueError(f"token must be one of the vocab {task.vocab!r}, got {token!r}")
    count = ((tokens == task.vocab.index(token)).float() * mask).sum(1)  # (B,)
    return match_reward(task, prompt_ids, tokens, mask) + pay * count
