"""Lesson 06's last exercise: one training step, checked the way it goes wrong in practice.

Three situations, each on a bandit policy so it runs in a blink:
- two steps with ONE optimiser, as in training: a step that does not zero the gradients first adds
  the previous step's gradient to its own, and the second step's weights differ;
- rewards that carry gradient (a KL penalty computed from the policy's own log-probs folded in, as in
  lesson 04): an advantage that is not detached adds a gradient through the baseline and the return;
- a NaN reward: the weights must stay exactly as they were.
"""

from __future__ import annotations

from typing import Callable

import torch

from reinforce_edu.teaching.feedback import ExerciseError, _call, _compare, _gen

FORBID_STEP = ["reinforce_edu.core.policy_gradient.surrogate_loss", "reinforce_edu.core.baselines.LeaveOneOutBaseline",
               "reinforce_edu.core.baselines.advantages", "reinforce_edu.core.losses.reinforce_loss",
               "reinforce_edu.llm.update.apply_update", "reinforce_edu.llm.minimal.update",
               "reinforce_edu.llm.minimal.train_step", "reinforce_edu.toy.train.train_toy"]
REVISIT = ("lesson 06, 'one training step' (zero_grad → loss with a detached advantage → backward → clip to 1.0 → "
           "step, and no step on a non-finite loss); reinforce_edu/llm/trainer.py, reinforce_edu/llm/update.py")


def _reference_step(policy, optimizer, prompts, actions, rewards) -> None:  # finite rewards only
    from reinforce_edu.core.baselines import LeaveOneOutBaseline
    from reinforce_edu.core.policy_gradient import surrogate_loss

    optimizer.zero_grad()
    rewards = rewards.detach()
    loss = surrogate_loss(policy.log_prob(prompts, actions), rewards - LeaveOneOutBaseline()(rewards))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    optimizer.step()


def _pair(seed: int):
    from reinforce_edu.toy.bandits import SoftmaxPolicy

    theirs, ours = SoftmaxPolicy(2, 3, init_std=1.0, seed=seed), SoftmaxPolicy(2, 3, init_std=1.0, seed=seed)
    return theirs, ours, torch.optim.SGD(theirs.parameters(), lr=0.5), torch.optim.SGD(ours.parameters(), lr=0.5)


def _their_step(fn: Callable, policy, optimizer, case: dict, nan_ok: bool = False) -> None:
    args = dict(policy=policy, optimizer=optimizer, **case)
    try:
        _call("training_step", fn, args, REVISIT, FORBID_STEP)
    except ExerciseError as err:
        if not (nan_ok and isinstance(err.__cause__, ValueError)):
            raise  # refusing NaN rewards outright with a ValueError is also correct: nothing was updated


def _kl_rewards(policy, prompts, actions, raw, ref_logp, beta=0.5):
    """r − β (log π_θ − log π_ref): rewards that carry gradient back to the policy, (P, k)."""
    return raw - beta * (policy.log_prob(prompts, actions) - ref_logp)


def check_training_step(fn: Callable, hidden: bool = False) -> None:
    """fn(policy, optimizer, prompts (P,), actions (P, k), rewards (P, k)) -> float loss.

    One REINFORCE step: zero the gradients, RLOO advantages (detached), surrogate loss, backward, clip
    the gradient norm to 1.0, and skip the update (weights untouched) when the loss or gradient is not finite.
    """
    seeds = [1, 2] if not hidden else [121, 122]
    prompts = torch.arange(2)
    for s in seeds:  # two steps, one optimiser
        g = _gen(s)
        theirs, ours, opt_t, opt_o = _pair(s)
        for step in ("first", "second"):
            actions = torch.randint(0, 3, (2, 4), generator=g)
            rewards = 10 * torch.randn(2, 4, generator=g)  # large: clipping matters
            case = dict(prompts=prompts, actions=actions, rewards=rewards)
            _their_step(fn, theirs, opt_t, case)
            _reference_step(ours, opt_o, prompts, actions, rewards)
            why = ("" if step == "first" else
                   ": the first step was right, so the gradient of the first step is still in .grad — zero it first")
            _compare(f"training_step (the weights after the {step} step with the same optimiser{why})",
                     theirs.logits.detach(), ours.logits.detach(), case, REVISIT)
    for s in seeds:  # rewards that carry gradient
        g = _gen(s + 1000)
        theirs, ours, opt_t, opt_o = _pair(s)
        actions = torch.randint(0, 3, (2, 4), generator=g)
        raw, ref_logp = torch.rand(2, 4, generator=g), -2 * torch.rand(2, 4, generator=g)
        _their_step(fn, theirs, opt_t, dict(prompts=prompts, actions=actions,
                                            rewards=_kl_rewards(theirs, prompts, actions, raw, ref_logp)))
        _reference_step(ours, opt_o, prompts, actions, _kl_rewards(ours, prompts, actions, raw, ref_logp))
        _compare("training_step (the weights after one step when the rewards carry gradient: the advantage must be "
                 "detached)", theirs.logits.detach(), ours.logits.detach(),
                 dict(prompts=prompts, actions=actions, rewards=_kl_rewards(ours, prompts, actions, raw, ref_logp)), REVISIT)
    theirs, ours, opt_t, _ = _pair(7)  # the non-finite case: weights must stay as they were
    rewards = 10 * torch.randn(2, 4, generator=_gen(7))
    rewards[0, 0] = float("nan")
    case = dict(prompts=prompts, actions=torch.randint(0, 3, (2, 4), generator=_gen(8)), rewards=rewards)
    _their_step(fn, theirs, opt_t, case, nan_ok=True)
    _compare("training_step (weights after a NaN reward must be unchanged)", theirs.logits.detach(),
             ours.logits.detach(), case, REVISIT)
    print(f"✓ training_step: correct over {2 * len(seeds)} steps with one optimiser each, with rewards that carry "
          f"gradient, and with a NaN reward")
