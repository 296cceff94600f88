"""Lesson 08's tasks and verifiable rewards: generators, checkers, bad input, TRL's calling convention."""

import math

import pytest
import torch

from reinforce_edu.llm.rewards import compute_rewards
from reinforce_edu.llm.tasks import FAMILIES, load_tasks, solve, split_tasks
from reinforce_edu.llm.verifiable import (CheckerError, check_answer, correctness_reward, format_reward,
                                          parse_number, score_completions, verifiable_reward)


def test_every_instance_is_solved_from_its_prompt_alone():
    for name, fam in FAMILIES.items():
        for slots in fam.instances():
            assert solve(fam.template.format(**slots)) == fam.answer(slots)
    assert solve("What is 7 + 12? Answer with just the number.") == "19"
    assert solve("Which number is larger, 37 or 52? Answer with just the number.") == "52"
    assert solve("Write the word 'lamp' in capital letters. Answer with just the word.") == "LAMP"
    with pytest.raises(ValueError, match="matches no task family"):
        solve("What is the capital of France?")


def test_splits_are_deterministic_disjoint_and_sized():
    per = {"add": (30, 10), "upper": (5, 5)}
    a, b = split_tasks(per, seed=0), split_tasks(per, seed=0)
    assert a == b
    train = {r["prompt"] for r in a["train"]}
    held = {r["prompt"] for r in a["heldout"]}
    assert len(train) == 35 and len(held) == 15 and not train & held
    assert split_tasks(per, seed=1) != a
    with pytest.raises(ValueError, match="fewer than"):
        split_tasks({"upper": (30, 20)})
    with pytest.raises(ValueError, match="unknown task family"):
        split_tasks({"sub": (1, 1)})


def test_shipped_splits_share_no_instance_and_answers_are_right():
    train, held = load_tasks("train"), load_tasks("heldout")
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}
    assert len({r["prompt"] for r in train}) == len(train)
    assert all(solve(r["prompt"]) == r["answer"] for r in train + held)
    assert {r["task"] for r in held} == set(FAMILIES)


@pytest.mark.parametrize("completion,answer,right", [
    ("19", "19", True), ("19.", "19", True), ("14 + 5 = 19", "19", True), ("The answer is 19!", "19", True),
    ("14 + 15 = 20", "29", False), ("19 or 20", "19", False), ("nineteen", "19", False),
    ("LAMP", "LAMP", True), ("lamp", "LAMP", False), ("The lamp is bright", "lamp", True), ("lamps", "lamp", False),
    ("", "19", False), ("?!", "lamp", False), ("   ", "19", False),
])
def test_check_answer(completion, answer, right):
    assert check_answer(completion, answer) is right


def test_unparseable_completions_score_zero_and_never_raise():
    prompts = ["What is 2 + 3? Answer with just the number."] * 5
    completions = ["", "...", "\n\n", "five", "\x00\ufffd"]
    assert correctness_reward(completions, prompts=prompts) == [0.0] * 5
    assert parse_number("no digits here") is None
    assert correctness_reward([None], answer=["5"]) == [0.0]  # not even a string: 0, no crash


def test_a_raising_checker_is_reported_with_the_offending_completion():
    def fragile(completion, answer):
        return int(completion) == int(answer)  # raises on "five"

    with pytest.raises(CheckerError, match=r"checker 'fragile' raised ValueError.*completion 1: 'five'.*answer '5'"):
        score_completions(fragile, ["5", "five"], ["5", "5"])
    with pytest.raises(CheckerError, match=r"returned nan on completion 0: 'x'"):
        score_completions(lambda c, a: float("nan"), ["x"], ["5"])


def test_nan_reward_never_reaches_the_loss():
    def nan_reward(completions, **kwargs):
        return [math.nan] * len(completions)

    with pytest.raises(ValueError, match="non-finite rewards"):
        compute_rewards(nan_reward, ["1", "2"], ["p", "q"])


def test_format_term_and_trl_signature():
    prompts = ["What is 2 + 3? Answer with just the number."] * 3
    completions = ["5", "It is 5", "4"]
    assert format_reward(completions) == [1.0, 0.0, 1.0]
    assert correctness_reward(completions, prompts=prompts) == [1.0, 1.0, 0.0]
    r = verifiable_reward(format_weight=0.5)
    assert r(completions, prompts=prompts) == [1.5, 1.0, 0.5]
    # TRL calls reward_func(prompts=..., completions=..., completion_ids=..., **dataset_columns)
    assert r(prompts=prompts, completions=completions, completion_ids=[[1]] * 3, answer=["5"] * 3) == [1.5, 1.0, 0.5]
    # conversational completions, as TRL passes them for chat datasets
    chat = [[{"role": "assistant", "content": c}] for c in completions]
    assert correctness_reward(prompts=prompts, completions=chat, answer=["5"] * 3) == [1.0, 1.0, 0.0]
    # through the trainer's checks: a (B,) float tensor
    assert compute_rewards(r, completions, prompts).tolist() == [1.5, 1.0, 0.5]
    with pytest.raises(ValueError, match="format_weight"):
        verifiable_reward(format_weight=float("nan"))
    with pytest.raises(ValueError, match="needs prompts"):
        correctness_reward(["5"])


def test_called_as_trl_1_16_grpo_trainer_calls_it():
    # trl/trainer/grpo_trainer.py (_calculate_rewards): reward_func(prompts=, completions=, completion_ids=,
    # **dataset columns, trainer_state=, log_extra=, log_metric=); chat datasets give lists of messages
    prompts = [[{"role": "user", "content": "What is 2 + 3? Answer with just the number."}]] * 2
    completions = [[{"role": "assistant", "content": "5"}], [{"role": "assistant", "content": "6"}]]
    extras = dict(completion_ids=[[1], [2]], trainer_state=object(), log_extra=print, log_metric=print)
    assert correctness_reward(prompts=prompts, completions=completions, **extras) == [1.0, 0.0]
    assert verifiable_reward(0.5)(prompts=prompts, completions=completions, answer=["5", "5"], **extras) == [1.5, 0.5]
