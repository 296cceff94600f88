"""Bradley–Terry reward model: loss vs hand-computed values, the head learns on synthetic
features, features are batch-invariant, save/load round trip, TRL-style reward function.

`test_smollm2_*` use the real SmolLM2 backbone with the shipped head (a second or two once cached).
"""

import math

import pytest
import torch

from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.reward_model import (RewardHead, RewardModel, bradley_terry_loss, load_reward_model, read_head,
                                        train_head)


def test_bradley_terry_loss_matches_hand_computation():
    r_c = torch.tensor([2.0, 0.0, -1.0], requires_grad=True)
    r_r = torch.tensor([0.0, 0.0, 1.0])
    loss = bradley_terry_loss(r_c, r_r)
    # −log σ(Δ) = log(1 + e^{−Δ}) for Δ = 2, 0, −2
    expected = (math.log(1 + math.exp(-2)) + math.log(2) + math.log(1 + math.exp(2))) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()  # ∂L/∂r_c = −σ(−Δ) / N
    delta = torch.tensor([2.0, 0.0, -2.0])
    torch.testing.assert_close(r_c.grad, -torch.sigmoid(-delta) / 3)
    huge = bradley_terry_loss(torch.tensor([-1000.0]), torch.tensor([1000.0]))
    assert huge.item() == pytest.approx(2000.0)  # stable: no overflow to inf
    with pytest.raises(ValueError, match="same shape"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(TypeError, match="r_chosen"):
        bradley_terry_loss(torch.zeros(3, dtype=torch.long), torch.zeros(3))


def _synthetic_pairs(n: int, w: torch.Tensor, scale: torch.Tensor, g: torch.Generator):
    """Pairs labelled by the Bradley–Terry model itself with true reward r = w · (x / scale)."""
    a, b = torch.randn(n, len(w), generator=g) * scale, torch.randn(n, len(w), generator=g) * scale
    p_a = torch.sigmoid((a - b) / scale @ w)
    a_wins = torch.rand(n, generator=g) < p_a
    chosen = torch.where(a_wins[:, None], a, b)
    rejected = torch.where(a_wins[:, None], b, a)
    return chosen, rejected


def test_head_learns_on_synthetic_features(one_thread):
    g = torch.Generator().manual_seed(0)
    H = 16
    w = torch.randn(H, generator=g)
    scale = torch.ones(H)
    scale[:3] = 50.0  # a few huge coordinates, like real hidden states
    train_c, train_r = _synthetic_pairs(500, w, scale, g)
    test_c, test_r = _synthetic_pairs(4000, w, scale, g)
    head = RewardHead(H)
    curves = train_head(head, train_c, train_r, steps=300, eval_chosen=test_c, eval_rejected=test_r)
    assert curves["train_loss"][-1] < curves["train_loss"][0] == pytest.approx(math.log(2))
    with torch.no_grad():
        acc = (head(test_c) > head(test_r)).float().mean().item()
    bayes = ((test_c - test_r) / scale @ w > 0).float().mean().item()  # the true reward's accuracy
    se = math.sqrt(0.25 / len(test_c))
    assert acc > 0.5 + 20 * se  # far above chance (0.5)
    assert acc > bayes - 4 * se - 0.02  # close to the best possible
    with torch.no_grad():  # the bias centres rewards on the training answers
        assert head(torch.cat([train_c, train_r])).mean().abs().item() < 1e-4


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=0)


def test_features_do_not_depend_on_batching_or_padding(tiny):
    model, tok = tiny
    rm = RewardModel(model, tok, batch_size=4, layer=1)
    prompts = ["Describe a sunny day.", "Write one sentence about exams.", "Hi", "A"]
    answers = ["It is bright and warm and everyone smiles.", "Hard.", "", "Lovely, just lovely."]
    together = rm.features(prompts, answers)  # (4, H), one left-padded batch
    alone = torch.cat([rm.features([p], [a]) for p, a in zip(prompts, answers)])
    assert together.shape == (4, model.config.hidden_size) and together.dtype == torch.float32
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    last = RewardModel(model, tok, pooling="last", layer=1).features(prompts, answers)
    assert not torch.allclose(last[:2], together[:2])  # the two poolings differ on real answers
    torch.testing.assert_close(last[2], together[2])  # an empty answer falls back to the last token


def test_early_exit_features_match_output_hidden_states(tiny):
    """Oracle: stopping the forward pass after layer L gives hidden_states[L] of the full pass."""
    model, tok = tiny
    prompts, answers = ["Describe a sunny day.", "Hi"], ["Bright and warm.", "Hello to you, friend."]
    for layer in (1, 2):
        rm = RewardModel(model, tok, layer=layer)
        seqs = [rm._encode(p, a) for p, a in zip(prompts, answers)]
        expected = []
        for seq, n_answer in seqs:  # one unpadded row at a time, the plain way
            with torch.no_grad():
                hs = model(torch.tensor([seq]), output_hidden_states=True).hidden_states[layer]  # (1, T, H)
            expected.append(hs[0, -n_answer:].mean(0))
        torch.testing.assert_close(rm.features(prompts, answers), torch.stack(expected), atol=1e-5, rtol=1e-5)
    assert RewardModel(model, tok).layer == 2  # the middle of 2 layers: n // 2 + 1
    with pytest.raises(ValueError, match="layer"):
        RewardModel(model, tok, layer=3)
    with pytest.raises(ValueError, match="pooling"):
        RewardModel(model, tok, pooling="max")


def test_score_reward_fn_and_head_round_trip(tiny, tmp_path):
    model, tok = tiny
    head = RewardHead(model.config.hidden_size)
    with torch.no_grad():
        head.linear.weight.normal_(generator=torch.Generator().manual_seed(1))
    rm = RewardModel(model, tok, head, pooling="last")
    prompts, answers = ["p1", "p2", "p3"], ["good", "bad", "fine"]
    scores = rm.score(prompts, answers)
    assert scores.shape == (3,) and not scores.requires_grad
    fn = rm.as_reward_fn()
    assert fn(answers, prompts=prompts) == pytest.approx(scores.tolist())
    with pytest.raises(ValueError, match="prompts"):
        fn(answers)
    with pytest.raises(ValueError, match="same length"):
        rm.score(prompts, answers[:2])
    rm.save_head(tmp_path / "head.safetensors")
    loaded = load_reward_model(model, tok, path=tmp_path / "head.safetensors")
    assert loaded.pooling == "last" and loaded.layer == model.config.num_hidden_layers
    torch.testing.assert_close(loaded.score(prompts, answers), scores)
    assert not any(p.requires_grad for p in model.parameters())  # the shared backbone is frozen
    with pytest.raises(FileNotFoundError, match="train_reward_model"):
        read_head(tmp_path / "missing.safetensors")


def test_load_reward_model_trains_a_missing_head(tiny, tmp_path):
    model, tok = tiny
    pairs = [{"prompt": "Describe your day.", "chosen": "It was a great, happy day.", "rejected": "It was awful."},
             {"prompt": "Describe exams.", "chosen": "Exams are fine, I enjoy them.", "rejected": "I hate exams."}]
    from reinforce_edu.llm.reward_model import fit_reward_model
    rm, curves = fit_reward_model(model, tok, pairs=pairs, steps=50, save_to=tmp_path / "h.safetensors")
    assert curves["train_loss"][-1] < curves["train_loss"][0]
    s = rm.score([p["prompt"] for p in pairs] * 2, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
    assert (s[:2] > s[2:]).all()  # it fits its own training pairs
    again = load_reward_model(model, tok, path=tmp_path / "h.safetensors")
    torch.testing.assert_close(again.head.linear.weight, rm.head.linear.weight)


# --- real SmolLM2-135M with the shipped head ---------------------------------------------------

def test_smollm2_shipped_reward_model_prefers_positive_answers():
    rm = load_reward_model()
    prompt = "In one sentence, how do you feel about a rainy Monday morning?"
    positive = ["I love it, rainy mornings are cosy, calm and wonderful.",
                "It is a lovely, peaceful start to a great week."]
    negative = ["I hate it, rainy Mondays are miserable, cold and depressing.",
                "It is an awful, gloomy start to a terrible week."]
    s = rm.score([prompt] * 4, positive + negative)
    assert s[:2].min() > s[2:].max()
