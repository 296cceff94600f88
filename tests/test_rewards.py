"""Reward functions and shipped data: gold scorer sanity, check_rewards errors, data consistency."""

import math

import numpy as np
import pytest
import torch

from reinforce_edu.llm.data import load_completions, load_preferences, load_prompts
from reinforce_edu.llm.rewards import check_rewards, compute_rewards, gold_reward


def test_gold_reward_ranks_positive_above_negative():
    texts = ["What a wonderful, happy day, I love it!", "The table is in the kitchen.",
             "This is awful, I hate it and feel miserable.", ""]
    pos, neutral, neg, empty = gold_reward(texts, prompts=["p"] * 4)  # TRL passes prompts too
    assert pos > 0.5 and neg < -0.5 and abs(neutral) < 0.1 and empty == 0.0
    assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in (pos, neutral, neg))
    with pytest.raises(TypeError, match="completions"):
        gold_reward("a single string")  # a str is not a list of completions


def test_check_rewards_accepts_numbers_in_any_container():
    for values in ([1, 2.5, -3.0], (1.0, 2.5, -3.0), np.array([1.0, 2.5, -3.0]), torch.tensor([1.0, 2.5, -3.0])):
        out = check_rewards(values, 3)
        assert out.dtype == torch.float32 and out.shape == (3,)
        torch.testing.assert_close(out, torch.tensor([1.0, 2.5, -3.0]))


def test_check_rewards_errors_name_the_function():
    with pytest.raises(ValueError, match=r"my_reward.*returned 2 value\(s\).*for 3 completion"):
        check_rewards([0.1, 0.2], 3, name="my_reward")
    with pytest.raises(ValueError, match=r"my_reward.*non-finite.*position\(s\) \[1\]"):
        check_rewards([0.1, math.nan, 0.3], 3, name="my_reward")
    with pytest.raises(ValueError, match="my_reward.*non-finite"):
        check_rewards([0.1, 0.2, math.inf], 3, name="my_reward")
    with pytest.raises(ValueError, match="my_reward"):
        check_rewards([[0.1, 0.2, 0.3]], 3, name="my_reward")  # nested: wrong shape
    with pytest.raises(TypeError, match="my_reward"):
        check_rewards(["good", "bad", "ugly"], 3, name="my_reward")
    with pytest.raises(TypeError, match="my_reward"):
        check_rewards(None, 3, name="my_reward")


def test_compute_rewards_names_the_reward_function():
    def nan_reward(completions, **kwargs):
        return [float("nan")] * len(completions)

    def short_reward(completions, **kwargs):
        return [1.0] * (len(completions) - 1)

    with pytest.raises(ValueError, match="'nan_reward'.*non-finite"):
        compute_rewards(nan_reward, ["a", "b"], ["p", "q"])
    with pytest.raises(ValueError, match="'short_reward'.*returned 1 value"):
        compute_rewards(short_reward, ["a", "b"])
    with pytest.raises(ValueError, match="same length"):
        compute_rewards(gold_reward, ["a", "b"], ["p"])
    seen = {}

    def spy(completions, **kwargs):
        seen.update(kwargs)
        return [len(c) for c in completions]

    torch.testing.assert_close(compute_rewards(spy, ["ab", "c"], ["p", "q"]), torch.tensor([2.0, 1.0]))
    assert seen["prompts"] == ["p", "q"]


def test_shipped_prompts_split_by_topic():
    train, heldout = load_prompts("train"), load_prompts("heldout")
    assert 200 <= len(train) + len(heldout) <= 1000 and len(heldout) >= 40
    assert not set(train) & set(heldout)
    assert len(set(train)) == len(train)
    with pytest.raises(ValueError, match="split"):
        load_prompts("test")


def test_shipped_preferences_follow_the_gold_scorer():
    prompts = {"train": set(load_prompts("train")), "heldout": set(load_prompts("heldout"))}
    for split in ("train", "heldout"):
        pairs = load_preferences(split)
        assert len(pairs) >= 100
        assert all(p["prompt"] in prompts[split] and p["chosen"] != p["rejected"] for p in pairs)
        assert all(p["chosen_gold"] - p["rejected_gold"] >= 0.3 - 1e-9 for p in pairs)
        sample = pairs[:: max(1, len(pairs) // 25)]  # recompute the gold labels on a sample
        chosen = gold_reward([p["chosen"] for p in sample])
        rejected = gold_reward([p["rejected"] for p in sample])
        assert all(c > r for c, r in zip(chosen, rejected))
        assert np.allclose(chosen, [p["chosen_gold"] for p in sample], atol=1e-4)
    rows = load_completions("heldout")
    assert {r["prompt"] for r in rows} == prompts["heldout"]
