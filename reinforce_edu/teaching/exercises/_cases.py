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


def shift_mask(mask: torch.Tensor) -> torch.Tensor:
    """The usual off-by-one: the mask moved one token later (the EOS position wrongly kept, the first dropped)."""
    return torch.nn.functional.pad(mask, (1, 0))[:, :-1]
