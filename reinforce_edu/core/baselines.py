r"""Baselines for the REINFORCE estimator: one interface for bandit, toy sequences and LLM.

The score-function gradient stays unbiased for any baseline b that does not depend
on the sampled action itself:

    ∇J(θ) = E[(R − b) ∇ log π_θ(a|x)]        because  E[b ∇ log π_θ(a|x)] = b ∇ Σ_a π_θ(a|x) = 0.

A good baseline is close to E[R | x], which shrinks the variance of (R − b)·score.

Layout. Returns arrive *grouped*: a tensor of shape (P, k) — P prompts, k samples of
each (k = 1 is fine for every baseline except leave-one-out). A baseline returns a
(P, k) tensor of b_ij, detached. Calling a baseline is pure; `update()` is called
once per step *after* the loss, so a baseline never uses the current batch unless
its definition says so (batch mean, leave-one-out).

| baseline            | b_ij                                   | bias                        |
|---------------------|----------------------------------------|-----------------------------|
| `NoBaseline`        | 0                                      | none                        |
| `RunningMeanBaseline` | EMA of past returns (decay d)        | none (uses the past only)   |
| `BatchMeanBaseline` | mean of the whole batch, self included | shrinks ∇ by (1 − 1/n)      |
| `LeaveOneOutBaseline` | mean of the other k−1 samples of prompt i (RLOO) | none          |
| `ValueBaseline`     | learned V_φ(x), regressed on returns   | none (V uses the past only) |
| `FixedValueBaseline` | v_i given per prompt (a value fitted on past data) | none (v fixed before the batch) |

Taught in notebooks/02_baselines_and_variance.ipynb; reused unchanged by
`reinforce_edu.core.losses.reinforce_loss` and the LLM trainer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_choice, check_open_unit, check_positive_int, check_tensor


def _check_returns(returns: object, name: str = "returns") -> Tensor:
    """Returns must be a finite, non-empty, floating (P, k) tensor."""
    return check_tensor(returns, name, ndim=2, floating=True, finite=True)


class Baseline:
    """Interface: ``b = baseline(returns, prompts)`` then ``baseline.update(returns, prompts)``.

    returns: (P, k) float tensor, P prompts with k samples each.
    prompts: optional (P,) integer tensor of prompt ids (used by `ValueBaseline`).
    """

    name = "baseline"

    def __call__(self, returns: Tensor, prompts: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def update(self, returns: Tensor, prompts: Tensor | None = None) -> None:
        """Fold this step's returns into the baseline's state (no-op if stateless)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoBaseline(Baseline):
    """b = 0: vanilla REINFORCE, the highest variance."""

    name = "none"

    def __call__(self, returns: Tensor, prompts: Tensor | None = None) -> Tensor:
        returns = _check_returns(returns)
        return torch.zeros_like(returns)  # (P, k)


class RunningMeanBaseline(Baseline):
    r"""Exponential moving average of past returns: b ← d·b + (1 − d)·mean(R_batch).

    The value used for a batch comes from earlier batches only, so it is independent
    of the current samples and the gradient stays unbiased. Before the first update
    b = 0 (pass `init` to start elsewhere). `decay` must lie in (0, 1).

    `include_current=True` is the mistake to measure: the current batch is folded in
    *before* use, b = d·b + (1 − d)·mean(R_batch), so b contains (1 − d)·R_i / n and the
    expected gradient shrinks by 1 − (1 − d)/n (lesson 02).
    """

    name = "running_mean"

    def __init__(self, decay: float = 0.9, init: float = 0.0, include_current: bool = False) -> None:
        self.decay = check_open_unit(decay, "decay")
        self.value = float(init)
        self.steps = 0
        self.include_current = bool(include_current)

    def __call__(self, returns: Tensor, prompts: Tensor | None = None) -> Tensor:
        returns = _check_returns(returns)
        if self.include_current:  # the value after folding this batch in (state unchanged)
            mean = float(returns.detach().mean())
            folded = mean if self.steps == 0 else self.decay * self.value + (1 - self.decay) * mean
            return torch.full_like(returns, folded)  # (P, k)
        return torch.full_like(returns, self.value)  # (P, k)

    def update(self, returns: Tensor, prompts: Tensor | None = None) -> None:
        returns = _check_returns(returns)
        mean = float(returns.detach().mean())
        # the first update takes the batch mean outright (no bias toward `init`)
        self.value = mean if self.steps == 0 else self.decay * self.value + (1 - self.decay) * mean
        self.steps += 1

    def state_dict(self) -> dict:
        return {"value": self.value, "steps": self.steps, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.steps, self.decay = float(state["value"]), int(state["steps"]), float(state["decay"])

    def __repr__(self) -> str:
        extra = ", include_current=True" if self.include_current else ""
        return f"RunningMeanBaseline(decay={self.decay}{extra})"


class BatchMeanBaseline(Baseline):
    r"""b = mean of all n = P·k returns in the batch, *including the sample itself*.

    This is the seed's ``baseline = returns.mean().detach()``. Since b contains R_i / n,
    E[(R_i − b) ∇log π(a_i)] = (1 − 1/n) ∇J (for one prompt): the estimate is shrunk
    by (1 − 1/n). With `per_prompt=True` the mean is taken within each prompt's k
    samples (self-inclusive), shrinking by (1 − 1/k).
    """

    name = "batch_mean"

    def __init__(self, per_prompt: bool = False) -> None:
        self.per_prompt = bool(per_prompt)
        if self.per_prompt:
            self.name = "prompt_mean"

    def __call__(self, returns: Tensor, prompts: Tensor | None = None) -> Tensor:
        returns = _check_returns(returns).detach()
        if self.per_prompt:
            return returns.mean(dim=1, keepdim=True).expand_as(returns).clone()  # (P, k)
        return torch.full_like(returns, float(returns.mean()))  # (P, k)

    def __repr__(self) -> str:
        return f"BatchMeanBaseline(per_prompt={self.per_prompt})"


class LeaveOneOutBaseline(Baseline):
    r"""RLOO: b_ij = (Σ_l R_il − R_ij) / (k − 1), the mean of the *other* samples of prompt i.

    b_ij is independent of sample j, so the estimate is unbiased, and it tracks the
    per-prompt value E[R | x_i]. Needs k ≥ 2 samples per prompt.
    """

    name = "leave_one_out"

    def __call__(self, returns: Tensor, prompts: Tensor | None = None) -> Tensor:
        returns = _check_returns(returns).detach()
        k = returns.shape[1]
        if k < 2:
            raise ValueError(f"leave-one-out needs k >= 2 samples per prompt (returns.shape[1]), got k={k}")
        grouped_sum = returns.sum(dim=1, keepdim=True)  # (P, 1)
        return (grouped_sum - returns) / (k - 1)  # (P, k)


class ValueBaseline(Baseline):
    r"""A learned value baseline V_φ(x): one number per prompt id, fitted to the returns.

    update: one step of SGD on the squared error ½(R − V_φ(x))², i.e.
    V_φ(x_i) ← V_φ(x_i) + lr · mean_j (R_ij − V_φ(x_i)).
    V is used detached; the returns of the current batch reach V only in `update`,
    after the loss, so the gradient stays unbiased. Pass `detach=False` to see what
    goes wrong when the baseline is left in the graph: the returned tensor then
    carries gradient to φ (see lesson 02).
    """

    name = "value"

    def __init__(self, n_prompts: int, lr: float = 0.5, init: float = 0.0, detach: bool = True) -> None:
        check_positive_int(n_prompts, "n_prompts")
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        self.lr = float(lr)
        self.detach = bool(detach)
        self.values = torch.full((n_prompts,), float(init), requires_grad=not self.detach)  # (n_prompts,)

    def _prompts(self, prompts: Tensor | None, returns: Tensor) -> Tensor:
        if prompts is None:
            raise ValueError("ValueBaseline needs prompts, a (P,) integer tensor of prompt ids")
        prompts = check_tensor(prompts, "prompts", ndim=1, integer=True)
        if prompts.shape[0] != returns.shape[0]:
            raise ValueError(f"prompts must have shape ({returns.shape[0]},) to match returns "
                             f"{tuple(returns.shape)}, got {tuple(prompts.shape)}")
        if int(prompts.min()) < 0 or int(prompts.max()) >= self.values.shape[0]:
            raise ValueError(f"prompts must be ids in [0, {self.values.shape[0]}), got range "
                             f"[{int(prompts.min())}, {int(prompts.max())}]")
        return prompts

    def __call__(self, returns: Tensor, prompts: Tensor | None = None) -> Tensor:
        returns = _check_returns(returns)
        prompts = self._prompts(prompts, returns)
        v = self.values[prompts].unsqueeze(1).expand_as(returns)  # (P, k)
        return v.detach().clone() if self.detach else v

    def update(self, returns: Tensor, prompts: Tensor | None = None) -> None:
        returns = _check_returns(returns).detach()
        prompts = self._prompts(prompts, returns)
        ids = prompts.tolist()
        with torch.no_grad():
            if len(set(ids)) == len(ids):  # distinct prompts: every row's step at once, the same numbers
                self.values[prompts] += self.lr * (returns.mean(dim=1) - self.values[prompts])  # (P,)
                return
            for p, r in zip(ids, returns):  # a repeated prompt takes its rows' steps one after the other
                self.values[p] += self.lr * (r.mean() - self.values[p])

    def state_dict(self) -> dict:
        return {"values": self.values.detach().clone(), "lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.values.copy_(state["values"])
        self.lr = float(state["lr"])

    def __repr__(self) -> str:
        return f"ValueBaseline(n_prompts={self.values.shape[0]}, lr={self.lr})"


class FixedValueBaseline(Baseline):
    r"""b_ij = v_i: one value per prompt of the batch, fixed before its samples are drawn.

    `values` (P,) holds V(x_i) for the P prompts of the (P, k) returns it will be called on, in
    order — e.g. the exact E[R | x] on a bandit, or a value model fitted on *past* data
    (`reinforce_edu.llm.value_baseline`). The returns themselves are never read, so the estimate
    stays unbiased.
    """

    name = "value"

    def __init__(self, values: Tensor) -> None:
        self.values = check_tensor(values, "values", ndim=1, floating=True, finite=True).detach().clone()  # (P,)

    def __call__(self, returns: Tensor, prompts: Tensor | None = None) -> Tensor:
        returns = _check_returns(returns)
        if returns.shape[0] != self.values.shape[0]:
            raise ValueError(f"returns must have {self.values.shape[0]} rows (one per value), "
                             f"got shape {tuple(returns.shape)}")
        return self.values.to(returns.dtype)[:, None].expand_as(returns).clone()  # (P, k)

    def __repr__(self) -> str:
        return f"FixedValueBaseline(P={self.values.shape[0]})"


BASELINES = ("none", "running_mean", "batch_mean", "prompt_mean", "leave_one_out", "value")


def make_baseline(name: str, *, decay: float = 0.9, n_prompts: int | None = None,
                  lr: float = 0.5) -> Baseline:
    """Build a baseline by name: one of `BASELINES` ("rloo" is an alias of "leave_one_out")."""
    if name == "rloo":
        name = "leave_one_out"
    check_choice(name, "baseline", BASELINES)
    if name == "none":
        return NoBaseline()
    if name == "running_mean":
        return RunningMeanBaseline(decay=decay)
    if name == "batch_mean":
        return BatchMeanBaseline()
    if name == "prompt_mean":
        return BatchMeanBaseline(per_prompt=True)
    if name == "leave_one_out":
        return LeaveOneOutBaseline()
    if n_prompts is None:
        raise ValueError("baseline 'value' needs n_prompts, the number of distinct prompt ids")
    return ValueBaseline(n_prompts=n_prompts, lr=lr)


def advantages(returns: Tensor, baseline: Baseline, prompts: Tensor | None = None) -> Tensor:
    """A_ij = R_ij − b_ij, detached. returns: (P, k) -> (P, k)."""
    returns = _check_returns(returns)
    return (returns - baseline(returns, prompts)).detach()
