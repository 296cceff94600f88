r"""One guarded optimiser update: backward, the sum over processes, unscaling, the norm, clipping, the step.

    g = ∇L  (summed over processes: llm.distributed),     ‖g‖ = sqrt(Σ_p ‖g_p‖²)  before clipping,
    g ← g · min(1, c / ‖g‖)  (c = max_grad_norm > 0),     θ ← AdamW(θ, g)

With fp16 loss scaling the loss is scaled by S before backward and the gradients divided by S before the
norm sees them. A non-finite ‖g‖ in any parameter group skips the step: no weight and no optimiser moment
changes (the scaler halves S). Gradients are cleared before and after, so nothing leaks into the next step.
Used by llm.trainer (REINFORCE) and llm.ppo (policy and critic).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from reinforce_edu.llm.sharding import full

ParamGroup = tuple[Sequence[torch.nn.Parameter], torch.optim.Optimizer]


def apply_update(loss: Tensor, groups: list[ParamGroup], max_grad_norm: float,
                 scaler: torch.amp.GradScaler | None = None,
                 reduce: Callable[[list[torch.nn.Parameter]], None] | None = None) -> tuple[float, str | None]:
    """Backpropagate `loss` and step every (parameters, optimiser) group, or none of them.

    Returns (‖g‖ of the first group before clipping, None), or (that norm, "non-finite gradient") with
    nothing updated. `reduce` sums the gradients across processes in place (None: one process).
    """
    for _, opt in groups:
        opt.zero_grad(set_to_none=True)
    (loss if scaler is None else scaler.scale(loss)).backward()  # fp16: ∇(S·L) = S·g
    if reduce is not None:
        reduce([p for params, _ in groups for p in params])  # g = Σ_r g_r, before the norm
    norms = []
    for params, opt in groups:
        if scaler is not None:
            scaler.unscale_(opt)  # g ← g / S, before the norm and the clipping see it
        grads = [p.grad for p in params if p.grad is not None]
        norms.append(torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(()))  # ‖g‖ before clipping
    norms_ = [float(full(n)) for n in norms]  # a sharded gradient's norm is a DTensor (llm.sharding)
    reason = None if all(math.isfinite(n) for n in norms_) else "non-finite gradient"
    if reason is None:
        for (params, opt), norm in zip(groups, norms):
            if max_grad_norm > 0:  # g ← g · min(1, c / ‖g‖)
                torch.nn.utils.clip_grads_with_norm_(params, max_grad_norm, norm)
            opt.step()
    if scaler is not None:  # fp16: S halves after an overflow, grows after a run of good steps
        scaler.update()
    for _, opt in groups:
        opt.zero_grad(set_to_none=True)
    return norms_[0], reason
