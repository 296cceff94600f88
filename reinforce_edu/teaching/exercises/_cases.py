"""Shared inputs for the sequence exercises: masks with random lengths (every row keeps ≥ 1 token)."""

from __future__ import annotations

import torch

from reinforce_edu.teaching.feedback import _gen


def sequence_case(seed: int, B: int = 3, T: int = 5) -> dict:
    """{g: a generator to draw the rest from, mask (B, T) of 1s then 0s, B, T}."""
    g = _gen(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = max(1, T - 2)  # at least one row ends early: masked tokens are always present
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()  # (B, T)
    return dict(g=g, mask=mask, B=B, T=T)


def ratio_case(seed: int, B: int, T: int, spread: float, pad: float) -> dict:
    """A `sequence_case` with old_logp (B, T) in [−2, 0] and logp = old_logp + spread·noise, set to `pad` on
    padding (garbage that must not count): the inputs of the importance-ratio exercises (lessons 06, 07).
    Keys: logp, old_logp, mask, g (the case's generator, for what else the exercise draws)."""
    c = sequence_case(seed, B=B, T=T)
    old = -2 * torch.rand(B, T, generator=c["g"])
    logp = old + spread * torch.randn(B, T, generator=c["g"])
    logp = torch.where(c["mask"] > 0, logp, torch.full_like(logp, pad))
    return dict(logp=logp, old_logp=old, mask=c["mask"], g=c["g"])


def shift_mask(mask: torch.Tensor) -> torch.Tensor:
    """The usual off-by-one: the mask moved one token later (the EOS position wrongly kept, the first dropped)."""
    return torch.nn.functional.pad(mask, (1, 0))[:, :-1]
