r"""Verifiable rewards: a program checks the answer, r = 1 if right else 0 (plus an optional format term).

    r(x, y) = 1[check(y, answer(x))] + w_fmt · 1[y is one word alone]         w_fmt = 0 by default

A number is read as the *last* integer of the completion (the convention of GSM8K-style checkers: "14 + 5
= 19" answers 19), a word answer must appear as a whole word, case included ("LAMP" is not "lamp"). Bad input never
crashes a run and never reaches the loss as a NaN:

| what happens                                    | result                                              |
|-------------------------------------------------|-----------------------------------------------------|
| the completion cannot be parsed (empty, "?!")   | reward 0                                            |
| a checker raises                                | `CheckerError` naming the completion, its index, the answer |
| a checker returns NaN, inf or a non-number      | `CheckerError` likewise                             |
| a reward function returns NaN anyway            | `llm.rewards.compute_rewards` refuses it before the loss |

The reward functions keep TRL's signature — every argument by keyword, `f(completions, prompts=..., **kwargs)
-> list[float]`, extra dataset columns (here `answer`) passed as keywords — so the same functions run in this
library's trainer (which passes `prompts`) and in TRL's `GRPOTrainer` / `RLOOTrainer` (`reward_funcs=[...]`,
a dataset with "prompt" and optionally "answer" columns). Without `answer`, the answer is read from the prompt
(`llm.tasks.solve`). Taught in notebooks/08_verifiable_rewards.ipynb.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from reinforce_edu.llm.tasks import solve

_WORD = re.compile(r"[A-Za-z0-9]+")
_INT = re.compile(r"-?\d+")
_ALONE = re.compile(r"\s*[A-Za-z0-9]+\s*\.?\s*")

Checker = Callable[[str, str], object]
"""checker(completion, answer) -> bool or a number in [0, 1]."""


class CheckerError(RuntimeError):
    """A checker raised, or returned something that is not a finite number, on one completion."""


def completion_text(completion: object) -> str | None:
    """The text of a completion: a str, or TRL's conversational form [{"role": ..., "content": str}, ...]."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content")
        return content if isinstance(content, str) else None
    return None


def parse_number(completion: object) -> str | None:
    """The last integer in the completion ("14 + 5 = 19." -> "19"), or None if there is none to read."""
    text = completion_text(completion)
    found = _INT.findall(text) if text is not None else []
    return str(int(found[-1])) if found else None


def check_answer(completion: object, answer: str) -> bool:
    """The default checker: an integer answer must be the completion's last integer; a word answer must be
    one of its words, case included. An unreadable completion is simply wrong."""
    if _INT.fullmatch(answer):
        return parse_number(completion) == answer
    text = completion_text(completion)
    return text is not None and answer in _WORD.findall(text)


def score_completions(checker: Checker, completions: Sequence, answers: Sequence[str]) -> list[float]:
    """checker(c, a) for each pair, as floats; a raise or a non-finite value -> CheckerError naming the completion."""
    if len(completions) != len(answers):
        raise ValueError(f"completions and answers must have the same length, got {len(completions)} "
                         f"and {len(answers)}")
    name = getattr(checker, "__name__", type(checker).__name__)
    out = []
    for i, (c, a) in enumerate(zip(completions, answers)):
        try:
            value = float(checker(c, a))
        except Exception as err:  # noqa: BLE001 - any failure is reported with its input
            raise CheckerError(f"checker {name!r} raised {type(err).__name__}: {err} on completion {i}: {c!r} "
                               f"(answer {a!r})") from err
        if not math.isfinite(value):
            raise CheckerError(f"checker {name!r} returned {value} on completion {i}: {c!r} (answer {a!r}); "
                               f"a reward must be a finite number")
        out.append(value)
    return out


def _answers(completions: Sequence, prompts: Sequence[str] | None, answer: Sequence[str] | None) -> list[str]:
    if answer is not None:
        return [str(a) for a in answer]
    if prompts is None:
        raise ValueError("a verifiable reward needs prompts=[...] (the answer is read from each prompt) or "
                         "answer=[...] (a dataset column, as TRL passes it)")
    return [solve(completion_text(p) if not isinstance(p, str) else p) for p in prompts]


def correctness_reward(completions: Sequence, prompts: Sequence[str] | None = None,
                       answer: Sequence[str] | None = None, **kwargs) -> list[float]:
    """1.0 where `check_answer` finds the right answer in the completion, else 0.0 (TRL signature)."""
    return score_completions(check_answer, completions, _answers(completions, prompts, answer))


def format_reward(completions: Sequence, **kwargs) -> list[float]:
    """1.0 where the completion is one word alone (an optional full stop), as the prompt asks, else 0.0."""
    return [float(bool((t := completion_text(c)) is not None and _ALONE.fullmatch(t))) for c in completions]


def verifiable_reward(format_weight: float = 0.0, checker: Checker = check_answer) -> Callable[..., list[float]]:
    """A TRL-signature reward r = checker(y, answer) + format_weight · format_reward(y)."""
    if isinstance(format_weight, bool) or not isinstance(format_weight, (int, float)) or \
            not math.isfinite(format_weight) or format_weight < 0:
        raise ValueError(f"format_weight must be a finite number >= 0, got {format_weight!r}")

    def reward(completions: Sequence, prompts: Sequence[str] | None = None,
               answer: Sequence[str] | None = None, **kwargs) -> list[float]:
        right = score_completions(checker, completions, _answers(completions, prompts, answer))
        if format_weight == 0:
            return right
        return [r + format_weight * f for r, f in zip(right, format_reward(completions))]

    reward.__name__ = f"verifiable_reward(format_weight={format_weight:g})"
    return reward
