"""reinforce_edu.toy.methods / toy.ordering / core.significance: the toy PPO loss against a hand-written loop,
the critic against the policy's own states, determinism, every method training, paired statistics by hand,
and the errors on bad input."""

import copy
import math

import pytest
import torch

from reinforce_edu.core.kl import frozen_copy
from reinforce_edu.core.ppo import ppo_update
from reinforce_edu.core.significance import all_pairs, mean_se, paired_difference, seeds_to_resolve
from reinforce_edu.toy.enumeration import Enumeration
from reinforce_edu.toy.methods import (TOY_METHODS, ToyCritic, ToyMethodConfig, exact_scores, run_toy_method,
                                       train_toy_method)
from reinforce_edu.toy.ordering import make_init, run_ordering, summarise_ordering
from reinforce_edu.toy.rewards import match_reward
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask

TINY = ToyTask(vocab="ab", max_len=3, targets=("a", "ba"))  # 2 prompts, 15 completions each


def _hand_ppo_loss(logp, old_logp, values, old_values, ref_logp, rewards, mask, beta, eps, lam):
    """PPO's loss for one pass, one token at a time (γ = 1, whitened GAE, "sum" aggregation, clipped value loss)."""
    B, T = mask.shape
    lens = [int(mask[i].sum()) for i in range(B)]
    adv = [[0.0] * T for _ in range(B)]
    ret = [[0.0] * T for _ in range(B)]
    for i in range(B):
        n, nxt_adv = lens[i], 0.0
        for t in reversed(range(n)):
            r = -beta * float(old_logp[i, t] - ref_logp[i, t]) + (float(rewards[i]) if t == n - 1 else 0.0)
            v_next = float(old_values[i, t + 1]) if t + 1 < n else 0.0
            delta = r + v_next - float(old_values[i, t])
            nxt_adv = delta + lam * nxt_adv
            adv[i][t] = nxt_adv
            ret[i][t] = nxt_adv + float(old_values[i, t])
    flat = [adv[i][t] for i in range(B) for t in range(lens[i])]
    mu = sum(flat) / len(flat)
    sd = math.sqrt(sum((a - mu) ** 2 for a in flat) / (len(flat) - 1))
    pg, vl = 0.0, 0.0
    for i in range(B):
        for t in range(lens[i]):
            a = (adv[i][t] - mu) / (sd + 1e-8)
            rho = math.exp(float(logp[i, t] - old_logp[i, t]))
            pg += -min(rho * a, min(max(rho, 1 - eps), 1 + eps) * a) / B
            v, v_old = float(values[i, t]), float(old_values[i, t])
            v_clip = v_old + min(max(v - v_old, -eps), eps)
            vl += 0.5 * max((v - ret[i][t]) ** 2, (v_clip - ret[i][t]) ** 2) / len(flat)
    return pg + vl


def test_toy_ppo_loss_matches_a_hand_written_loop():
    """Both passes of ppo_update on a toy batch (the second after a real Adam step) against the loop above."""
    policy = ToyPolicy(TINY, hidden=8, seed=1)
    ref = frozen_copy(ToyPolicy(TINY, hidden=8, seed=2))
    critic = ToyCritic(policy)
    with torch.no_grad():
        critic.value_head.weight.normal_(0, 0.3)  # a non-zero critic, so that GAE and the value clip matter
    batch = policy.sample(torch.tensor([0, 1, 0, 1]), 2, generator=torch.Generator().manual_seed(0))
    rewards = match_reward(TINY, batch.prompt_ids, batch.tokens, batch.mask)  # (B,)
    with torch.no_grad():
        ref_logp = ref.log_probs(batch.prompt_ids, batch.tokens)
    seen, losses = {"logp": [], "values": []}, []
    opt = torch.optim.Adam(list(policy.parameters()) + list(critic.value_head.parameters()), lr=0.05)

    def policy_logp():
        out = policy.log_probs(batch.prompt_ids, batch.tokens)
        seen["logp"].append(out.detach())
        return out

    def critic_values():
        out = critic(batch.prompt_ids, batch.tokens)
        seen["values"].append(out.detach())
        return out

    def apply(loss):
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return 1.0

    ppo_update(policy_logp, critic_values, rewards, batch.mask, apply, ref_logp=ref_logp, beta=0.1, epochs=2,
               clip_range=0.2, value_clip_range=0.2, gamma=1.0, lam=0.9, aggregation="sum")
    assert len(losses) == 2
    assert not torch.equal(seen["logp"][0], seen["logp"][1])  # the second pass sees a moved policy
    for e in range(2):
        hand = _hand_ppo_loss(seen["logp"][e], seen["logp"][0], seen["values"][e], seen["values"][0], ref_logp,
                              rewards, batch.mask, beta=0.1, eps=0.2, lam=0.9)
        assert losses[e] == pytest.approx(hand, rel=1e-5, abs=1e-6)  # float32 sums of ~20 terms


def test_critic_reads_the_state_that_predicts_each_token():
    """With the value head set to the policy's head row for token v, V(s_t) = the policy's logit of v at t."""
    policy = ToyPolicy(TINY, hidden=8, seed=3)
    critic = ToyCritic(policy)
    tokens = torch.tensor([[0, 1, 2], [1, 2, 2], [1, 0, 1]])
    prompts = torch.tensor([0, 1, 1])
    assert torch.equal(critic(prompts, tokens), torch.zeros(3, 3))  # the head starts at zero
    with torch.no_grad():
        critic.value_head.weight.copy_(policy.head.weight[1:2])
        critic.value_head.bias.copy_(policy.head.bias[1:2])
    assert torch.allclose(critic(prompts, tokens), policy(prompts, tokens)[..., 1], atol=1e-6)


def test_same_seed_same_result_and_every_method_trains():
    enum = Enumeration(TINY)
    init = ToyPolicy(TINY, hidden=8, seed=0)
    cfg = ToyMethodConfig(steps=3, samples_per_step=8, lr=0.05, seed=4)
    for name in TOY_METHODS:
        a = run_toy_method(name, init, TINY, match_reward, enum, cfg)
        b = run_toy_method(name, init, TINY, match_reward, enum, cfg)
        assert a == b, name
        assert a["kl"] > 0, name  # the policy moved away from π_ref = the init
        trained = train_toy_method(name, copy.deepcopy(init), TINY, match_reward, cfg)
        assert all(not torch.equal(p, q) for p, q in zip(trained.head.parameters(), init.head.parameters())), name
    other = run_toy_method("rloo_k2", init, TINY, match_reward, enum, ToyMethodConfig(steps=3, samples_per_step=8,
                                                                                         lr=0.05, seed=5))
    assert other != run_toy_method("rloo_k2", init, TINY, match_reward, enum, cfg)


def test_exact_scores_of_the_init():
    enum = Enumeration(TINY)
    init = ToyPolicy(TINY, hidden=8, seed=0)
    sc = exact_scores(init, init, enum, enum.rewards(match_reward), beta=0.5)
    assert sc["kl"] == pytest.approx(0.0, abs=1e-6) and sc["J"] == pytest.approx(sc["reward"], abs=1e-6)


def test_ordering_runs_and_pairs_are_paired():
    res = run_ordering([0, 1], inits=("weak",), methods=("vanilla_pg", "rloo_k4"), task=TINY, steps=2,
                       samples_per_step=8)
    sm = summarise_ordering(res)["weak"]
    rec = res["weak"]
    assert len(rec["J0"]) == 2 and all(j0 < jo for j0, jo in zip(rec["J0"], rec["J_opt"]))  # the optimum is above
    (pair,) = sm["pairs"]
    d = [a - b for a, b in zip(rec["methods"]["vanilla_pg"]["J"], rec["methods"]["rloo_k4"]["J"])]
    assert pair["mean"] == pytest.approx(sum(d) / 2) and pair["se"] == pytest.approx(abs(d[0] - d[1]) / 2)


def test_significance_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 2.9, 3.2]
    d = [0.5, 1.0, 0.1, 0.8]
    m = sum(d) / 4
    se = math.sqrt(sum((x - m) ** 2 for x in d) / 3) / 2
    p = paired_difference(a, b, ("A", "B"))
    assert (p.mean, p.se) == (pytest.approx(m), pytest.approx(se))
    assert p.resolved == (m > 2 * se) and p.verdict == ("A > B" if p.resolved else "within noise")
    assert mean_se([2.0, 4.0]) == (pytest.approx(3.0), pytest.approx(1.0))
    assert [q.verdict for q in all_pairs({"x": [1.0, 1.1, 0.9], "y": [0.0, 0.1, -0.1], "z": [0.0, 2.0, -2.0]})] == [
        "x > y", "within noise", "within noise"]
    assert seeds_to_resolve(0.1, 0.5) == 101  # (2·0.5/0.1)² = 100: 100 seeds give exactly 2 SE, not more
    assert 0.1 > 2 * 0.5 / math.sqrt(101) and not 0.1 > 2 * 0.5 / math.sqrt(100)


@pytest.mark.parametrize("call, match", [
    (lambda: run_toy_method("reinforce", None, TINY, match_reward, None), "method"),
    (lambda: train_toy_method("rloo_k2", ToyPolicy(TINY), TINY, match_reward, ToyMethodConfig(samples_per_step=6)),
     "samples_per_step"),
    (lambda: train_toy_method("rloo_k2", ToyPolicy(TINY), TINY, match_reward, ToyMethodConfig(lr=0.0,
                                                                                                  samples_per_step=8)),
     "lr"),
    (lambda: train_toy_method("ppo", ToyPolicy(TINY), TINY, match_reward, ToyMethodConfig(steps=0)), "steps"),
    (lambda: train_toy_method("ppo", ToyPolicy(TINY), TINY, match_reward, ToyMethodConfig(beta=-1.0,
                                                                                            samples_per_step=8)),
     "beta"),
    (lambda: make_init("medium", TINY, 0), "init"),
    (lambda: run_ordering([], task=TINY), "seeds"),
    (lambda: run_ordering([0], inits=("medium",), task=TINY), "inits"),
    (lambda: run_ordering([0], task=TINY, lr=0.1), "unknown settings"),
    (lambda: paired_difference([1.0, 2.0], [1.0, 2.0, 3.0]), "one score per seed"),
    (lambda: paired_difference([1.0], [1.0]), "at least 2 seeds"),
    (lambda: paired_difference([1.0, float("nan")], [1.0, 2.0]), "NaN"),
    (lambda: seeds_to_resolve(0.0, 1.0), "gap"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_types_are_named():
    with pytest.raises(TypeError, match="config"):
        train_toy_method("rloo_k2", ToyPolicy(TINY), TINY, match_reward, {"steps": 3})
    with pytest.raises(TypeError, match="sequence"):
        paired_difference("12", [1.0, 2.0])
