r"""A batch split across processes: the reductions that give back what belongs to the whole batch.

N processes may each hold B_r of a batch's B rows (`reinforce_edu.llm.distributed`). What is a property of
the whole batch — the mean and std PPO whitens its advantages with, the token count "token_mean" divides
by, a logged fraction — must then come from the rows of every process. A core function that needs one
takes a `batch` object with two collectives:

    batch.total(x)         Σ_r x_r                                   (a scalar tensor)
    batch.gather_rows(x)   (B_r, ...) -> (B, ...), rows in rank order ((B_r, T_r): zero-padded to max_r T_r)

`LOCAL`, the default, is the one-process batch: both are the identity, so a function given it computes
bit for bit what it computed before it took `batch`. `llm.distributed.OneProcess` and `ProcessGroup` have
the same two methods (core never imports them).

A loss whose weights divide by a count of the whole batch, n = Σ_r n_r (rows for "sum", "seq_mean" and
"constant", valid tokens for "token_mean"), is computed by process r with its own count n_r and scaled by
its share s_r = n_r / n:

    Σ_r s_r L_r = Σ_r (n_r / n) (1 / n_r) Σ_{i∈r} ℓ_i = (1 / n) Σ_i ℓ_i

so the gradients summed over the processes are the gradient of the whole batch's loss.
Used by `reinforce_edu.core.ppo`.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class Batch(Protocol):
    """The two collectives a function over a split batch needs (see the module docstring)."""

    def total(self, x: Tensor) -> Tensor: ...

    def gather_rows(self, x: Tensor) -> Tensor: ...


class LocalBatch:
    """The whole batch is here (one process): `total` and `gather_rows` return their argument."""

    def total(self, x: Tensor) -> Tensor:
        """Σ_r x_r over the one process: x."""
        return x

    def gather_rows(self, x: Tensor) -> Tensor:
        """The rows of every process: x's."""
        return x

    def __repr__(self) -> str:
        return "LOCAL"


LOCAL = LocalBatch()


def share(batch: Batch, mask: Tensor, aggregation: str) -> float:
    """s_r = n_r / n: this process's part of a count of the whole batch. mask: (B_r, T).

    n_r: the valid tokens for "token_mean", the rows otherwise. Exactly 1.0 with `LOCAL` (n_r / n_r), so
    `loss * share` is then `loss`, bit for bit.
    """
    n = mask.sum() if aggregation == "token_mean" else torch.tensor(float(mask.shape[0]), device=mask.device)
    n = n.to(torch.float64)
    return float(n / batch.total(n).clamp(min=1))  # no valid token anywhere: 0, as aggregate's clamp gives


def widest(batch: Batch, mask: Tensor) -> int:
    """max_r T_r: the token positions of the whole batch (what "constant" divides by). mask: (B_r, T_r)."""
    return int(batch.gather_rows(torch.tensor([mask.shape[1]], device=mask.device)).max())


def valid_values(batch: Batch, x: Tensor, mask: Tensor) -> Tensor:
    """x at the valid positions of every process's rows, in the order of the whole batch. (B_r, T), (B_r, T) -> (n,)."""
    return batch.gather_rows(x)[batch.gather_rows(mask) > 0]
