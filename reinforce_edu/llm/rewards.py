"""Reward functions: the offline gold scorer, and the checks every reward passes through.

A reward function follows TRL's signature, so the same function works here and in TRL:

    f(completions: list[str], **kwargs) -> list[float]     # kwargs may hold prompts=list[str]

The course's task is to make SmolLM2's short answers more *positive*. The gold scorer is
VADER's compound sentiment score in [-1, 1] (Hutto & Gilbert, 2014): a fixed, rule-based
judge that plays the role of the human labellers. The policy is optimised against a
*learned* reward model (reinforce_edu/llm/reward_model.py) trained on pairs the gold scorer
ranked, and the gold scorer measures whether that optimisation really helped.

Taught in notebooks/05_reward_model.ipynb and notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from functools import lru_cache

import torch
from torch import Tensor

RewardFn = Callable[..., list[float]]
"""TRL's reward-function signature: f(completions: list[str], **kwargs) -> list[float]."""


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    return SentimentIntensityAnalyzer()


def _check_texts(texts: object, name: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a list of str, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(t).__name__}")
    return list(texts)


def gold_reward(completions: list[str], **kwargs) -> list[float]:
    """The gold scorer: VADER compound sentiment of each completion, in [-1, 1].

    completions: (B,) texts. Extra keyword arguments (prompts=...) are accepted and ignored,
    as TRL passes them to every reward function. Returns (B,) floats; -1 very negative,
    0 neutral (or empty), +1 very positive. Taught in notebooks/05_reward_model.ipynb.
    """
    completions = _check_texts(completions, "completions")
    vader = _vader()
    return [float(vader.polarity_scores(c)["compound"]) for c in completions]


def reward_fn_name(fn: object) -> str:
    """A readable name for a reward function (for error messages and logs)."""
    return getattr(fn, "__name__", None) or type(fn).__name__


def check_rewards(values: object, n: int, name: str = "reward function") -> Tensor:
    """Validate what a reward function returned and turn it into a (n,) float32 tensor.

    values: a list/tuple/array/tensor of n real numbers, one per completion.
    Raises TypeError if they are not numbers, and ValueError, naming `name`, if the count
    is not n or any value is NaN/inf: a bad reward must stop training before it reaches
    the loss, never be averaged in silently. Taught in notebooks/06_rlhf_small_llm.ipynb.
    """
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"{name} must return a list of {n} floats, got {type(values).__name__}")
    try:
        rewards = torch.as_tensor(values if isinstance(values, Tensor) else list(values),
                                  dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must return a list of {n} floats; could not read its output "
                        f"as numbers ({err})") from err
    if rewards.dim() != 1 or rewards.numel() != n:
        raise ValueError(f"{name} returned {rewards.numel()} value(s) with shape {tuple(rewards.shape)} "
                         f"for {n} completion(s); expected a list of exactly {n} floats")
    bad = (~torch.isfinite(rewards)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"{name} returned non-finite rewards (NaN or inf) at position(s) {bad[:10]}"
                         f"{' ...' if len(bad) > 10 else ''}; every reward must be a finite float")
    return rewards


def compute_rewards(reward_fn: RewardFn, completions: list[str], prompts: list[str] | None = None,
                    **kwargs) -> Tensor:
    """Call a TRL-style reward function and check its output: (B,) float32 tensor.

    Errors name the function, e.g. "reward function 'my_reward' returned 3 value(s) ... for 4".
    """
    if not callable(reward_fn):
        raise TypeError(f"reward_fn must be callable, got {type(reward_fn).__name__}")
    completions = _check_texts(completions, "completions")
    if prompts is not None:
        prompts = _check_texts(prompts, "prompts")
        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions must have the same length, "
                             f"got {len(prompts)} and {len(completions)}")
        kwargs["prompts"] = prompts
    values = reward_fn(completions, **kwargs)
    return check_rewards(values, len(completions), name=f"reward function {reward_fn_name(reward_fn)!r}")


def make_reward_fn(name: str, backbone: torch.nn.Module, tokenizer) -> RewardFn:
    """The proxy reward named in the config. "reward_model" (the head in data/) or a head file
    "*.safetensors" (scripts/train_reward_model.py --out) shares `backbone` (the frozen reference)."""
    if name == "gold":
        return gold_reward
    if name == "reward_model" or name.endswith(".safetensors"):
        from reinforce_edu.llm.reward_model import HEAD_FILE, load_reward_model
        if name != "reward_model" and not os.path.isfile(name):
            raise FileNotFoundError(f"reward head {name} not found; make it with "
                                    f"`python scripts/train_reward_model.py --model PATH --out {name}`")
        path = HEAD_FILE if name == "reward_model" else name
        return load_reward_model(backbone=backbone, tokenizer=tokenizer, path=path).as_reward_fn()
    if ":" in name:
        module, attr = name.split(":", 1)
        fn = getattr(importlib.import_module(module), attr, None)
        if not callable(fn):
            raise ValueError(f"reward {name!r}: {module} has no callable {attr!r}")
        return fn
    raise ValueError(f"unknown reward {name!r}; expected 'reward_model', 'gold', a head file '*.safetensors' "
                     f"or 'module:function'")
