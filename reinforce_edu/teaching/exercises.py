"""Checkers for the course exercises: immediate, specific feedback inside the notebook.

Each ``check_*`` runs a student's function on a few inputs and compares it with the
library's own implementation. On a mismatch it raises `ExerciseError` saying which
input, what was expected, what came back, and which lesson section to revisit; on
success it prints one line. A stub that still raises `NotImplementedError` fails the
check with that error. Grade cells call ``check_*(fn)`` and, between nbgrader's hidden
test markers, ``check_*(fn, hidden=True)`` on further inputs.

Taught alongside every lesson; see `reinforce_edu.teaching.assignments` for release and grading.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from reinforce_edu.teaching.feedback import ExerciseError, _compare, _describe, _gen, _run


# ---------------------------------------------------------------- lesson 01 -----------------

def check_score_function_estimate(fn: Callable, hidden: bool = False) -> None:
    """fn(probs (A,), actions (n,), advantages (n,)) -> (A,): ĝ = (1/n) Σ_i A_i ∇_θ log softmax(θ)_{a_i}."""
    def reference(probs, actions, advantages):
        from reinforce_edu.core.policy_gradient import surrogate_loss
        logits = probs.log().clone().requires_grad_(True)
        logp = torch.log_softmax(logits, -1)[actions]
        (g,) = torch.autograd.grad(-surrogate_loss(logp, advantages), logits)
        return g

    cases = [dict(probs=torch.tensor([0.5, 0.25, 0.25]), actions=torch.tensor([0, 2]), advantages=torch.tensor([1.0, -1.0]))]
    for seed in ([1, 2] if not hidden else [11, 12, 13]):
        g = _gen(seed)
        a = 3 + seed % 4
        probs = torch.softmax(torch.randn(a, generator=g), -1)
        n = 1 + seed % 5
        cases.append(dict(probs=probs, actions=torch.randint(0, a, (n,), generator=g), advantages=torch.randn(n, generator=g)))
    _run("score_function_estimate", fn, reference, cases,
         "lesson 01, 'the score-function estimator' (∇ log softmax(θ)_a = e_a − π); reinforce_edu/core/policy_gradient.py")


# ---------------------------------------------------------------- lesson 02 -----------------

def check_leave_one_out_baseline(fn: Callable, hidden: bool = False) -> None:
    """fn(returns (P, k)) -> (P, k): b_ij = mean of the other k − 1 returns of prompt i."""
    from reinforce_edu.core.baselines import LeaveOneOutBaseline

    cases = [dict(returns=torch.tensor([[1.0, 2.0, 3.0]]))]
    cases += [dict(returns=torch.randn(2 + s % 3, 2 + s % 4, generator=_gen(s))) for s in ([1, 2] if not hidden else [21, 22, 23])]
    _run("leave_one_out_baseline", fn, lambda returns: LeaveOneOutBaseline()(returns), cases,
         "lesson 02, 'leave-one-out (RLOO)': b_ij = (Σ_l R_il − R_ij)/(k − 1); reinforce_edu/core/baselines.py")


def check_running_mean_baselines(fn: Callable, hidden: bool = False) -> None:
    """fn(batch_means (list of float), decay) -> list of the baseline used for each batch (past only)."""
    from reinforce_edu.core.baselines import RunningMeanBaseline

    def reference(batch_means, decay):
        base, used = RunningMeanBaseline(decay=decay), []
        for m in batch_means:
            used.append(base.value)
            base.update(torch.tensor([[float(m)]]))
        return torch.tensor(used)

    cases = [dict(batch_means=[1.0, 3.0, 2.0], decay=0.5), dict(batch_means=[4.0, 4.0, 0.0, 1.0], decay=0.9)]
    if hidden:
        cases += [dict(batch_means=torch.randn(8, generator=_gen(31)).tolist(), decay=0.7), dict(batch_means=[2.0], decay=0.1)]
    _run("running_mean_baselines", lambda **kw: torch.as_tensor(fn(**kw), dtype=torch.float32), reference, cases,
         "lesson 02, 'running mean': b_1 = 0, then b ← d·b + (1 − d)·mean (the first update takes the mean); "
         "reinforce_edu/core/baselines.py")


def check_gradient_variance(fn: Callable, hidden: bool = False) -> None:
    """fn(policy, prompts (n,), actions (n,), advantages (n,)) -> float: tr Cov of g_i = A_i ∇log π(a_i|x_i)."""
    from reinforce_edu.toy.bandits import SoftmaxPolicy
    from reinforce_edu.core.per_sample import per_sample_grads
    from reinforce_edu.toy.bandit_estimates import _score_loss

    def reference(policy, prompts, actions, advantages):
        g = per_sample_grads(policy, _score_loss, prompts, actions, advantages, params=["logits"])
        return float(g.double().var(0, unbiased=True).sum())

    cases = []
    for s in ([1, 2] if not hidden else [41, 42]):
        g = _gen(s)
        policy = SoftmaxPolicy(3, 4, init_std=1.0, seed=s)
        n = 16 + s % 7
        cases.append(dict(policy=policy, prompts=torch.randint(0, 3, (n,), generator=g),
                          actions=torch.randint(0, 4, (n,), generator=g), advantages=torch.randn(n, generator=g)))
    _run("gradient_variance", fn, reference, cases,
         "lesson 02, 'per-sample gradients' (torch.func.vmap over grad; the total variance is the trace of the "
         "covariance, unbiased: divide by n − 1); reinforce_edu/core/per_sample.py, reinforce_edu/core/variance.py")


# ---------------------------------------------------------------- lesson 03 -----------------

def _sequence_case(seed: int, B: int = 3, T: int = 5) -> dict:
    g = _gen(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()  # (B, T)
    return dict(g=g, mask=mask, B=B, T=T)


def check_reward_to_go(fn: Callable, hidden: bool = False) -> None:
    """fn(rewards (B, T), mask (B, T), gamma) -> (B, T): G_t = Σ_{s≥t} γ^{s−t} m_s r_s, 0 where masked."""
    from reinforce_edu.core.credit import reward_to_go

    cases = [dict(rewards=torch.tensor([[1.0, 0.0, 2.0]]), mask=torch.tensor([[1.0, 1.0, 1.0]]), gamma=1.0),
             dict(rewards=torch.tensor([[1.0, 1.0, 5.0]]), mask=torch.tensor([[1.0, 1.0, 0.0]]), gamma=0.5)]
    for s in ([1] if not hidden else [51, 52]):
        c = _sequence_case(s)
        cases.append(dict(rewards=torch.randn(c["B"], c["T"], generator=c["g"]), mask=c["mask"], gamma=0.9))
    _run("reward_to_go", fn, reward_to_go, cases,
         "lesson 03, 'token-level credit: reward-to-go' (tokens after EOS get nothing); reinforce_edu/core/credit.py")


def check_token_mean_loss(fn: Callable, hidden: bool = False) -> None:
    """fn(logp (B, T), advantages (B, T), mask (B, T)) -> scalar: −Σ m·A·logp / Σ m (DAPO's token mean)."""
    from reinforce_edu.core.credit import aggregate

    def reference(logp, advantages, mask):
        return aggregate(-advantages * logp, mask, "token_mean")

    cases = []
    for s in ([1, 2] if not hidden else [61, 62, 63]):
        c = _sequence_case(s)
        logp = -torch.rand(c["B"], c["T"], generator=c["g"]) * 3
        cases.append(dict(logp=logp, advantages=torch.randn(c["B"], c["T"], generator=c["g"]), mask=c["mask"]))
    _run("token_mean_loss", fn, reference, cases,
         "lesson 03, 'aggregation modes' (token mean: divide by the number of unmasked tokens in the whole batch); "
         "reinforce_edu/core/credit.py")


# ---------------------------------------------------------------- lesson 04 -----------------

def check_k3(fn: Callable, hidden: bool = False) -> None:
    """fn(logp (B, T), ref_logp (B, T)) -> (B, T): k3 = (e^ρ − 1) − ρ, ρ = ref_logp − logp."""
    from reinforce_edu.core.kl import kl_estimate

    cases = [dict(logp=torch.tensor([[-1.0, -0.5]]), ref_logp=torch.tensor([[-1.0, -2.0]]))]
    for s in ([1] if not hidden else [71, 72]):
        g = _gen(s)
        cases.append(dict(logp=-3 * torch.rand(2, 4, generator=g), ref_logp=-3 * torch.rand(2, 4, generator=g)))
    _run("k3", fn, lambda logp, ref_logp: kl_estimate(logp, ref_logp, "k3"), cases,
         "lesson 04, 'three estimators of KL' (k3 is unbiased and never negative); reinforce_edu/core/kl.py")


def check_reinforce_loss(fn: Callable, hidden: bool = False) -> None:
    """fn(logp (B, T) with grad, ref_logp (B, T), rewards (B,), mask (B, T), beta, k) -> scalar loss.

    Checked: the loss value AND its gradient with respect to logp (where the seed's faults show).
    Configuration: KL (k1) folded into the return, detached; leave-one-out baseline over groups
    of k; summed over tokens, then the mean over the batch (aggregation "sum", lesson 03).
    """
    from reinforce_edu.core.baselines import LeaveOneOutBaseline
    from reinforce_edu.core.losses import reinforce_loss

    def ref_value(logp, ref_logp, rewards, mask, beta, k):
        return reinforce_loss(logp, rewards, mask, ref_logp=ref_logp, beta=beta, kl_estimator="k1",
                              kl_placement="reward", baseline=LeaveOneOutBaseline(), group_size=k,
                              aggregation="sum").loss

    def grad_of(f: Callable, case: dict) -> Tensor:
        logp = case["logp"].clone().requires_grad_(True)
        loss = f(**{**case, "logp": logp})
        if not isinstance(loss, Tensor) or not loss.requires_grad:
            raise ExerciseError("reinforce_loss must return a scalar tensor that depends on logp (with a gradient)")
        (g,) = torch.autograd.grad(loss, logp)
        return g

    cases = []
    for s in ([1, 2] if not hidden else [81, 82]):
        c = _sequence_case(s, B=4, T=4)
        cases.append(dict(logp=-2 * torch.rand(4, 4, generator=c["g"]), ref_logp=-2 * torch.rand(4, 4, generator=c["g"]),
                          rewards=torch.randn(4, generator=c["g"]), mask=c["mask"], beta=0.1 * s % 0.5 + 0.05, k=2))
    revisit = ("lesson 04, 'the seed's faults, corrected' (detach the KL inside the return; leave-one-out, not the "
               "self-inclusive mean); reinforce_edu/core/losses.py")
    _run("reinforce_loss", fn, ref_value, cases, revisit)
    for case in cases:
        _compare("reinforce_loss (its gradient w.r.t. logp)", grad_of(fn, case), grad_of(ref_value, case), case, revisit)
    print("✓ reinforce_loss: gradient matches too")


# ---------------------------------------------------------------- lesson 05 -----------------

def check_bradley_terry_loss(fn: Callable, hidden: bool = False) -> None:
    """fn(r_chosen (N,), r_rejected (N,)) -> scalar: mean −log σ(r_chosen − r_rejected)."""
    def reference(r_chosen, r_rejected):
        return torch.nn.functional.softplus(-(r_chosen - r_rejected)).mean()

    cases = [dict(r_chosen=torch.tensor([0.0]), r_rejected=torch.tensor([0.0])),
             dict(r_chosen=torch.tensor([2.0, -1.0]), r_rejected=torch.tensor([0.5, 1.0]))]
    if hidden:
        cases += [dict(r_chosen=torch.tensor([60.0, -60.0]), r_rejected=torch.tensor([-60.0, 60.0])),  # stable?
                  dict(r_chosen=torch.randn(7, generator=_gen(91)), r_rejected=torch.randn(7, generator=_gen(92)))]
    _run("bradley_terry_loss", fn, reference, cases,
         "lesson 05, 'Bradley–Terry' (P(chosen ≻ rejected) = σ(r_c − r_r); use logsigmoid/softplus for large "
         "margins); reinforce_edu/llm/reward_model.py", atol=1e-4)


# ---------------------------------------------------------------- lesson 06 -----------------

def check_completion_logprobs(fn: Callable, hidden: bool = False) -> None:
    """fn(logits (B, L, V), input_ids (B, L), prompt_length, completion_mask (B, T)) -> (B, T).

    Token t of the completion sits at position prompt_length + t and is predicted by the
    logits at position prompt_length + t − 1. Masked positions (after EOS) must be 0.
    """
    def reference(logits, input_ids, prompt_length, completion_mask):
        logp = torch.log_softmax(logits[:, prompt_length - 1:-1].double(), -1)  # (B, T, V)
        tokens = input_ids[:, prompt_length:]  # (B, T)
        return (logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) * completion_mask).float()

    cases = []
    for s in ([1, 2] if not hidden else [101, 102]):
        g = _gen(s)
        B, P, T, V = 3, 2 + s % 3, 4, 11
        c = _sequence_case(s, B=B, T=T)
        cases.append(dict(logits=3 * torch.randn(B, P + T, V, generator=g), input_ids=torch.randint(0, V, (B, P + T), generator=g),
                          prompt_length=P, completion_mask=c["mask"]))
    _run("completion_logprobs", fn, reference, cases,
         "lesson 06, 'log-probs of the completion' (shift by one; gather − logsumexp; zero after EOS); "
         "reinforce_edu/llm/sampling.py", atol=1e-4)


def check_rloo_advantages(fn: Callable, hidden: bool = False) -> None:
    """fn(rewards (B,), k) -> (B,): A_i = R_i − mean of the other k − 1 rewards of its prompt (rows prompt-major)."""
    from reinforce_edu.core.baselines import LeaveOneOutBaseline, advantages

    def reference(rewards, k):
        grouped = rewards.view(-1, k)  # (P, k)
        return advantages(grouped, LeaveOneOutBaseline()).reshape(-1)

    cases = [dict(rewards=torch.tensor([1.0, 0.0, 0.5, 0.5]), k=2)]
    for s in ([1] if not hidden else [111, 112]):
        k = 2 + s % 3
        cases.append(dict(rewards=torch.randn(3 * k, generator=_gen(s)), k=k))
    _run("rloo_advantages", fn, reference, cases,
         "lesson 06, 'RLOO on the LLM' (group the B = P·k rewards as (P, k)); reinforce_edu/core/baselines.py")


def check_training_step(fn: Callable, hidden: bool = False) -> None:
    """fn(policy, optimizer, prompts (P,), actions (P, k), rewards (P, k)) -> float loss.

    One REINFORCE step: RLOO advantages, surrogate loss, backward, clip the gradient norm to
    1.0, and skip the update (weights untouched) when the loss or gradient is not finite.
    """
    from reinforce_edu.toy.bandits import SoftmaxPolicy
    from reinforce_edu.core.baselines import LeaveOneOutBaseline
    from reinforce_edu.core.policy_gradient import surrogate_loss

    def reference_step(policy, optimizer, prompts, actions, rewards):  # finite rewards only
        optimizer.zero_grad()
        loss = surrogate_loss(policy.log_prob(prompts, actions), rewards - LeaveOneOutBaseline()(rewards))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()

    revisit = ("lesson 06, 'one training step' (zero_grad → loss → backward → clip to 1.0 → step, and no step on a "
               "non-finite loss); reinforce_edu/llm/trainer.py")
    seeds = [1, 2] if not hidden else [121, 122]
    for i, s in enumerate(seeds + [None]):
        g = _gen(s or 7)
        theirs, ours = SoftmaxPolicy(2, 3, init_std=1.0, seed=s or 7), SoftmaxPolicy(2, 3, init_std=1.0, seed=s or 7)
        opt_t, opt_o = torch.optim.SGD(theirs.parameters(), lr=0.5), torch.optim.SGD(ours.parameters(), lr=0.5)
        prompts = torch.arange(2)
        actions = torch.randint(0, 3, (2, 4), generator=g)
        rewards = 10 * torch.randn(2, 4, generator=g)  # large: clipping matters
        if s is None:
            rewards[0, 0] = float("nan")  # the non-finite case: weights must stay as they were
        case = dict(prompts=prompts, actions=actions, rewards=rewards)
        try:
            fn(theirs, opt_t, prompts.clone(), actions.clone(), rewards.clone())
        except NotImplementedError:
            raise
        except Exception as err:
            if s is None and isinstance(err, ValueError):
                pass  # refusing NaN rewards outright is also correct: nothing was updated
            else:
                raise ExerciseError(f"training_step raised {type(err).__name__}: {err}\n  input:    {_describe(case)}\n"
                                    f"  revisit:  {revisit}") from err
        if s is None:
            _compare("training_step (weights after a NaN reward must be unchanged)", theirs.logits.detach(),
                     ours.logits.detach(), case, revisit)
        else:
            reference_step(ours, opt_o, prompts, actions, rewards)
            _compare("training_step (the weights after one step)", theirs.logits.detach(), ours.logits.detach(), case, revisit)
    print(f"✓ training_step: correct on {len(seeds) + 1} input(s), the non-finite one included")
