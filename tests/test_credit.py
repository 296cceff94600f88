"""Credit assignment: reward-to-go against a loop, aggregation on hand-computed examples, masks."""

import pytest
import torch

from reinforce_edu.core.credit import (aggregate, aggregation_weights, completion_mask, reward_to_go,
                                  terminal_rewards)
from reinforce_edu.core.losses import reinforce_loss


def _reward_to_go_loop(r, m, gamma):
    B, T = r.shape
    out = torch.zeros_like(r)
    for i in range(B):
        for t in range(T):
            if m[i, t]:
                out[i, t] = sum(gamma ** (s - t) * r[i, s] * m[i, s] for s in range(t, T))
    return out


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9, 1.0])
def test_reward_to_go_matches_a_loop(gamma):
    g = torch.Generator().manual_seed(0)
    r = torch.randn(7, 6, generator=g, dtype=torch.float64)
    m = completion_mask(torch.randint(0, 4, (7, 6), generator=g), eos_id=3).double()
    assert torch.allclose(reward_to_go(r, m, gamma), _reward_to_go_loop(r, m, gamma))


def test_completion_mask_includes_the_first_eos_only():
    tokens = torch.tensor([[1, 2, 0, 0], [0, 1, 0, 2], [1, 1, 1, 1]])  # EOS = 0
    expected = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]).float()
    assert torch.equal(completion_mask(tokens, eos_id=0), expected)


def test_terminal_reward_sits_on_the_last_token():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]]).float()
    assert torch.equal(terminal_rewards(torch.tensor([2.0, -1.0]), mask),
                       torch.tensor([[0, 2.0, 0], [0, 0, -1.0]]))


# hand-computed example: B = 2, T = 4, lengths 1 and 3, token losses ℓ
LOSSES = torch.tensor([[2.0, 9.0, 9.0, 9.0], [1.0, 2.0, 3.0, 9.0]])
MASK = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 0]])
EXPECTED = {
    "sum": (2 + 6) / 2,  # per-sequence sums, batch mean
    "seq_mean": (2 / 1 + 6 / 3) / 2,  # per-sequence means, batch mean
    "token_mean": (2 + 6) / 4,  # over the 4 tokens of the batch
    "constant": (2 + 6) / (2 * 4),  # B · T with T = max_tokens = 4
}


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_aggregation_modes_on_a_hand_computed_example(mode):
    assert float(aggregate(LOSSES, MASK, mode)) == pytest.approx(EXPECTED[mode])


def test_constant_aggregation_uses_max_tokens():
    assert float(aggregate(LOSSES, MASK, "constant", max_tokens=8)) == pytest.approx(8 / 16)
    with pytest.raises(ValueError, match="max_tokens"):
        aggregate(LOSSES, MASK, "constant", max_tokens=2)


def test_aggregation_weights_sum_to_one_per_token_mean():
    assert float(aggregation_weights(MASK, "token_mean").sum()) == pytest.approx(1.0)
    assert float(aggregation_weights(MASK, "seq_mean").sum()) == pytest.approx(1.0)


def test_token_credit_equals_sequence_credit_for_a_terminal_reward():
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(6, 5, generator=g)
    mask = completion_mask(torch.randint(0, 3, (6, 5), generator=g), eos_id=0)
    r = torch.randn(6, generator=g)
    seq = reinforce_loss(logp, r, mask, credit="sequence")
    tok = reinforce_loss(logp, r, mask, credit="token", gamma=1.0)
    assert torch.allclose(seq.advantages, tok.advantages)


def test_token_credit_drops_the_rewards_already_paid():
    g = torch.Generator().manual_seed(2)
    logp = -torch.rand(4, 5, generator=g)
    mask = torch.ones(4, 5)
    r = torch.randn(4, 5, generator=g)
    seq = reinforce_loss(logp, r, mask, credit="sequence")
    tok = reinforce_loss(logp, r, mask, credit="token")
    past = torch.cumsum(r, dim=1) - r  # Σ_{s<t} r_s
    assert torch.allclose(seq.advantages - tok.advantages, past, atol=1e-6)
    assert torch.allclose(seq.returns, tok.returns)


def test_credit_bad_input():
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(LOSSES, MASK, "batch")
    with pytest.raises(ValueError, match="mask"):
        aggregate(LOSSES, torch.zeros_like(MASK))
    with pytest.raises(ValueError, match="mask"):
        aggregate(LOSSES, MASK * 0.5)
    with pytest.raises(ValueError, match="gamma"):
        reward_to_go(LOSSES, MASK, gamma=-0.1)
