"""Lesson 02's exercises: the leave-one-out and running-mean baselines, per-sample gradient variance."""

from __future__ import annotations

from typing import Callable

import torch

from reinforce_edu.teaching.exercises._batched import grows_with_batch
from reinforce_edu.teaching.exercises._integrity import library_unavailable
from reinforce_edu.teaching.feedback import ExerciseError, _gen, _run

FORBID_LOO = ["reinforce_edu.core.baselines.LeaveOneOutBaseline"]
FORBID_RUNNING = ["reinforce_edu.core.baselines.RunningMeanBaseline"]
FORBID_PER_SAMPLE = ["reinforce_edu.core.per_sample.per_sample_grads", "reinforce_edu.core.per_sample.per_sample_grad_fn",
                     "reinforce_edu.core.per_sample.loop_per_sample_grads",
                     "reinforce_edu.toy.bandit_estimates.per_sample_estimates",
                     "reinforce_edu.toy.bandit_estimates.baseline_estimates",
                     "reinforce_edu.toy.bandit_estimates.compare_baselines",
                     "reinforce_edu.core.variance.estimator_stats"]


def check_leave_one_out_baseline(fn: Callable, hidden: bool = False) -> None:
    """fn(returns (P, k)) -> (P, k): b_ij = mean of the other k − 1 returns of prompt i."""
    from reinforce_edu.core.baselines import LeaveOneOutBaseline

    cases = [dict(returns=torch.tensor([[1.0, 2.0, 3.0]])), dict(returns=torch.tensor([[4.0, 0.0], [1.0, 3.0]]))]
    cases += [dict(returns=torch.randn(2 + s % 3, 2 + s % 4, generator=_gen(s))) for s in ([1, 2] if not hidden else [21, 22, 23])]
    _run("leave_one_out_baseline", fn, lambda returns: LeaveOneOutBaseline()(returns), cases,
         "lesson 02, 'leave-one-out (RLOO)': b_ij = (Σ_l R_il − R_ij)/(k − 1); reinforce_edu/core/baselines.py",
         forbid=FORBID_LOO,
         mistakes=[("the self-inclusive mean of the group (the seed's baseline): R_ij must be left out",
                    lambda returns: returns.mean(1, keepdim=True).expand_as(returns)),
                   ("divided by k, not k − 1 (an off-by-one in the count of the others)",
                    lambda returns: (returns.sum(1, keepdim=True) - returns) / returns.shape[1]),
                   ("the mean over the whole batch, not within each prompt's group",
                    lambda returns: ((returns.sum() - returns) / (returns.numel() - 1)))])


def check_running_mean_baselines(fn: Callable, hidden: bool = False) -> None:
    """fn(batch_means (list of float), decay) -> list of the baseline used for each batch (past only)."""
    from reinforce_edu.core.baselines import RunningMeanBaseline

    def reference(batch_means, decay):
        base, used = RunningMeanBaseline(decay=decay), []
        for m in batch_means:
            used.append(base.value)
            base.update(torch.tensor([[float(m)]]))
        return torch.tensor(used)

    def includes_current(batch_means, decay):  # the baseline after folding the batch in: biased
        return torch.cat([reference(batch_means, decay)[1:], reference(list(batch_means) + [0.0], decay)[-1:]])

    cases = [dict(batch_means=[1.0, 3.0, 2.0], decay=0.5), dict(batch_means=[4.0, 4.0, 0.0, 1.0], decay=0.9)]
    if hidden:
        cases += [dict(batch_means=torch.randn(8, generator=_gen(31)).tolist(), decay=0.7), dict(batch_means=[2.0], decay=0.1)]
    _run("running_mean_baselines", lambda **kw: torch.as_tensor(fn(**kw), dtype=torch.float32), reference, cases,
         "lesson 02, 'running mean': b_1 = 0, then b ← d·b + (1 − d)·mean (the first update takes the mean); "
         "reinforce_edu/core/baselines.py", forbid=FORBID_RUNNING,
         mistakes=[("each batch's own mean already folded into its baseline: use the value from before the batch",
                    includes_current)])


def _variance_case(seed: int, n: int) -> dict:
    from reinforce_edu.toy.bandits import SoftmaxPolicy

    g = _gen(seed)
    return dict(policy=SoftmaxPolicy(3, 4, init_std=1.0, seed=seed), prompts=torch.randint(0, 3, (n,), generator=g),
                actions=torch.randint(0, 4, (n,), generator=g), advantages=torch.randn(n, generator=g))


def check_gradient_variance(fn: Callable, hidden: bool = False) -> None:
    """fn(policy, prompts (n,), actions (n,), advantages (n,)) -> float: tr Cov of g_i = A_i ∇log π(a_i|x_i).

    Also checked: the function runs batched (vmap over grad, or a closed form): the number of torch
    calls it makes must not grow with n, as a Python loop over the samples does.
    """
    from reinforce_edu.core.per_sample import per_sample_grads
    from reinforce_edu.toy.bandit_estimates import _score_loss

    def per_sample(policy, prompts, actions, advantages):
        return per_sample_grads(policy, _score_loss, prompts, actions, advantages, params=["logits"]).double()

    revisit = ("lesson 02, 'per-sample gradients' (torch.func.vmap over grad; the total variance is the trace of the "
               "covariance, unbiased: divide by n − 1); reinforce_edu/core/per_sample.py, reinforce_edu/core/variance.py")
    cases = [_variance_case(s, 16 + s % 7) for s in ([1, 2] if not hidden else [41, 42])]
    _run("gradient_variance", fn, lambda **c: float(per_sample(**c).var(0, unbiased=True).sum()), cases, revisit,
         forbid=FORBID_PER_SAMPLE,
         mistakes=[("divided by n, not n − 1 (the biased variance)", lambda **c: float(per_sample(**c).var(0, unbiased=False).sum())),
                   ("the variance of the mean gradient (divided by n once more), not of one sample",
                    lambda **c: float(per_sample(**c).var(0).sum()) / len(c["prompts"]))])
    with library_unavailable("gradient_variance", FORBID_PER_SAMPLE, [fn]):
        looped, a, b = grows_with_batch(fn, _variance_case(3, 8), _variance_case(3, 64), 8, 64)
    if looped:
        raise ExerciseError(f"gradient_variance gives the right number but loops over the samples: it made {a} torch "
                            f"calls for n = 8 samples and {b} for n = 64. Compute all per-sample gradients at once with "
                            f"torch.func.vmap(torch.func.grad(...)).\n  revisit:  {revisit}")
    print(f"✓ gradient_variance: batched ({a} torch calls for n = 8, {b} for n = 64)")
