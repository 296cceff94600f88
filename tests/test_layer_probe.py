"""Per-layer probe: every layer's features in one pass equal RewardModel(layer=l) (oracle, tiny model);
probe_layers finds the one layer that carries the signal in synthetic features."""

import pytest
import torch

from reinforce_edu.llm.layer_probe import AllLayersModel, layer_slice, probe_layers
from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.reward_model import RewardModel


def test_all_layers_in_one_pass_equal_each_layer_alone():
    model, tok = tiny_llama(seed=0)
    L = model.config.num_hidden_layers
    prompts, answers = ["Describe a sunny day.", "Hi", "A"], ["Bright and warm.", "Hello to you, friend.", ""]
    every = AllLayersModel(model, tok, layer=L, batch_size=2).features(prompts, answers)  # (3, L·H)
    assert every.shape == (3, L * model.config.hidden_size)
    for layer in range(1, L + 1):
        alone = RewardModel(model, tok, layer=layer).features(prompts, answers)
        torch.testing.assert_close(layer_slice(every, layer, L), alone, atol=1e-5, rtol=1e-5)


def test_probe_layers_finds_the_informative_layer():
    g = torch.Generator().manual_seed(0)
    N, M, L, H = 400, 300, 3, 4
    w = torch.randn(H, generator=g)

    def pairs(n):  # layer 2 holds a noisy copy of the quality; layers 1 and 3 are noise
        c, r = torch.randn(n, L, H, generator=g), torch.randn(n, L, H, generator=g)
        better = (c[:, 1] @ w) > (r[:, 1] @ w)
        c2, r2 = torch.where(better[:, None, None], c, r), torch.where(better[:, None, None], r, c)
        return c2.reshape(n, L * H), r2.reshape(n, L * H)

    acc, se, correct = probe_layers(*pairs(N), *pairs(M), n_layers=L)
    assert correct.shape == (L, M) and len(acc) == len(se) == L
    assert acc[1] > 0.95 and max(abs(acc[0] - 0.5), abs(acc[2] - 0.5)) < 4 * max(se[0], se[2], 0.03)
    with pytest.raises(ValueError, match="layer"):
        layer_slice(torch.zeros(2, 12), 4, 3)
