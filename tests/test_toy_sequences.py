"""The toy sequence task: exact enumeration, sampling, rewards, and REINFORCE against the exact gradient."""

import pytest
import torch

from reinforce_edu.core.baselines import LeaveOneOutBaseline
from reinforce_edu.core.kl import frozen_copy
from reinforce_edu.core.losses import reinforce_loss
from reinforce_edu.toy.estimates import batch_estimates, token_scores
from reinforce_edu.toy.rewards import (delayed_rewards, first_token_reward, hackable_reward,
                                       match_reward, match_token_rewards)
from reinforce_edu.toy.enumeration import Enumeration
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask, demonstrations, scaled_copy, token_entropy, warm_up
from reinforce_edu.core.variance import estimator_stats

TASK = ToyTask()


pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def trained():
    policy = ToyPolicy(TASK, hidden=8, seed=0)
    ref = frozen_copy(policy)
    warm_up(policy, demonstrations(TASK, 8, noise=0.3, seed=0), steps=40, lr=0.03)
    return policy, ref, Enumeration(TASK)


def test_enumeration_is_a_distribution_and_matches_teacher_forcing(trained):
    policy, _, enum = trained
    with torch.no_grad():
        tree = enum.seq_logprobs(policy)  # (P, N)
        forced = enum.token_logprobs(policy).sum(1).view(enum.shape)
    assert enum.shape == (4, 5461)
    assert torch.allclose(tree.exp().sum(1), torch.ones(4), atol=1e-5)
    assert torch.allclose(tree, forced, atol=1e-4)


def test_sampling_frequencies_match_exact_probabilities(trained):
    policy, _, enum = trained
    n = 20000
    batch = policy.sample(torch.tensor([1]), n, torch.Generator().manual_seed(0))
    index = {tuple(row.tolist()): i for i, row in enumerate(enum.tokens)}
    counts = torch.bincount(torch.tensor([index[tuple(r.tolist())] for r in batch.tokens]),
                            minlength=enum.shape[1]).float()
    with torch.no_grad():
        p = enum.seq_logprobs(policy)[1].exp()
    top = p.argsort(descending=True)[:10]
    se = (p[top] * (1 - p[top]) / n).sqrt()
    assert ((counts[top] / n - p[top]).abs() <= 4 * se).all()


def test_samples_stop_at_eos(trained):
    policy, _, _ = trained
    b = policy.sample(torch.arange(4), 50, torch.Generator().manual_seed(1))
    eos = TASK.eos
    for tokens, mask in zip(b.tokens, b.mask):
        L = int(mask.sum())
        assert (tokens[L:] == eos).all() and (tokens[: L - 1] != eos).all()
        assert L == TASK.max_len or tokens[L - 1] == eos


def test_rewards_on_hand_examples():
    texts = ["ab", "a", "abc", "aaaaaa"]
    tokens = torch.stack([TASK.encode(t) for t in texts])  # prompt 0, target "ab."
    from reinforce_edu.core.credit import completion_mask
    mask = completion_mask(tokens, TASK.eos)
    ids = torch.zeros(4, dtype=torch.long)
    assert torch.allclose(match_reward(TASK, ids, tokens, mask), torch.tensor([1, 1 / 3, 2 / 3, 1 / 3]))
    assert torch.allclose(match_token_rewards(TASK, ids, tokens, mask).sum(1), match_reward(TASK, ids, tokens, mask))
    d = delayed_rewards(TASK, ids, tokens, mask)
    assert float(d[0, 2]) == pytest.approx(1 + 1 / 3) and float(d[0, 0]) == 0  # bonus at EOS
    assert torch.equal(first_token_reward(TASK, ids, tokens, mask), torch.ones(4))
    assert float(hackable_reward(TASK, ids, tokens, mask, pay=0.25)[3]) == pytest.approx(1 / 3 + 6 * 0.25)


def test_warm_up_lowers_the_loss_and_raises_the_exact_reward():
    policy = ToyPolicy(TASK, hidden=8, seed=1)
    enum = Enumeration(TASK)
    r = enum.rewards(match_reward)
    with torch.no_grad():
        before = float(enum.expectation(enum.seq_logprobs(policy), r))
    losses = warm_up(policy, demonstrations(TASK, 8, noise=0.1), steps=60, lr=0.03)
    with torch.no_grad():
        after = float(enum.expectation(enum.seq_logprobs(policy), r))
    assert losses[-1] < 0.5 * losses[0] and after > before + 0.3


def test_sharper_copy_has_lower_entropy(trained):
    policy, _, enum = trained
    with torch.no_grad():
        h1, h2 = float(enum.entropy(policy)), float(enum.entropy(scaled_copy(policy, 2.0)))
        b = policy.sample(torch.arange(4), 500, torch.Generator().manual_seed(2))
        sampled = float(token_entropy(policy(b.prompt_ids, b.tokens), b.mask))
    assert h2 < h1
    assert abs(sampled - h1) < 0.05


def _flat_exact_grad(policy, enum, rewards, ref, beta):
    J = enum.objective(policy, rewards, ref=ref, beta=beta)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(J, list(policy.parameters()))])


@pytest.mark.parametrize("credit,reward_fn", [("sequence", match_reward), ("token", match_token_rewards),
                                              ("token", delayed_rewards)])
def test_reinforce_loss_is_unbiased_for_the_exact_kl_regularised_gradient(trained, credit, reward_fn):
    policy, ref, enum = trained
    beta, k, M = 0.1, 2, 400
    prompts = torch.arange(TASK.n_prompts)
    batch = policy.sample(prompts.repeat(M), k, torch.Generator().manual_seed(3))  # M batches of B = 8
    with torch.no_grad():
        logp = policy.log_probs(batch.prompt_ids, batch.tokens)
        ref_logp = ref.log_probs(batch.prompt_ids, batch.tokens)
    rewards = reward_fn(TASK, batch.prompt_ids, batch.tokens, batch.mask)
    scores = token_scores(policy, batch.prompt_ids, batch.tokens, batch.mask)

    def loss_fn(lp, rows):
        return reinforce_loss(lp, rewards[rows], batch.mask[rows], ref_logp=ref_logp[rows], beta=beta,
                              baseline=LeaveOneOutBaseline(), group_size=k, prompts=prompts,
                              credit=credit, aggregation="sum").loss

    est = batch_estimates(loss_fn, logp, scores, batch_size=TASK.n_prompts * k)  # (M, D)
    seq_r = enum.rewards(lambda *a: reward_fn(*a).sum(1) if credit == "token" else reward_fn(*a))
    stats = estimator_stats(est, _flat_exact_grad(policy, enum, seq_r, ref, beta))
    assert abs(stats["shrink"] - 1) <= 4 * stats["shrink_se"]
    assert stats["bias_norm"] <= 1.5 * stats["noise_floor"]


def test_batch_estimates_match_a_loop_of_backward_passes(trained):
    policy, ref, _ = trained
    batch = policy.sample(torch.arange(4).repeat(3), 2, torch.Generator().manual_seed(4))  # 3 batches of 8
    rewards = match_token_rewards(TASK, batch.prompt_ids, batch.tokens, batch.mask)
    with torch.no_grad():
        ref_logp = ref.log_probs(batch.prompt_ids, batch.tokens)

    def loss_fn(lp, rows):
        return reinforce_loss(lp, rewards[rows], batch.mask[rows], ref_logp=ref_logp[rows], beta=0.2,
                              kl_estimator="k3", kl_placement="loss", credit="token", aggregation="seq_mean",
                              baseline=LeaveOneOutBaseline(), group_size=2).loss

    with torch.no_grad():
        logp = policy.log_probs(batch.prompt_ids, batch.tokens)
    est = batch_estimates(loss_fn, logp, token_scores(policy, batch.prompt_ids, batch.tokens, batch.mask), 8)
    params = list(policy.parameters())
    for m in range(3):
        rows = slice(8 * m, 8 * m + 8)
        lp = policy.log_probs(batch.prompt_ids[rows], batch.tokens[rows])
        grads = torch.autograd.grad(loss_fn(lp, rows), params)
        assert torch.allclose(est[m], -torch.cat([g.reshape(-1) for g in grads]), atol=1e-5)


def test_sequence_scores_refuse_token_dependent_weights(trained):
    from reinforce_edu.toy.estimates import sequence_scores
    policy, _, _ = trained
    batch = policy.sample(torch.arange(4), 2, torch.Generator().manual_seed(5))
    with torch.no_grad():
        logp = policy.log_probs(batch.prompt_ids, batch.tokens)
    scores = sequence_scores(policy, batch.prompt_ids, batch.tokens, batch.mask)
    dense = match_token_rewards(TASK, batch.prompt_ids, batch.tokens, batch.mask)
    with pytest.raises(ValueError, match="token scores"):
        batch_estimates(lambda lp, rows: reinforce_loss(lp, dense[rows], batch.mask[rows], credit="token").loss,
                        logp, scores, 8)


def test_kl_regularised_optimum_beats_the_reference(trained):
    policy, ref, enum = trained
    r = enum.rewards(match_reward)
    beta = 0.2
    log_star = enum.kl_regularised_optimum(ref, r, beta)
    with torch.no_grad():
        lref = enum.seq_logprobs(ref)
        j_star = float(enum.expectation(log_star, r - beta * (log_star - lref)))
        j_policy = float(enum.objective(policy, r, ref=ref, beta=beta))
    log_z = torch.logsumexp(lref + r / beta, dim=1)
    assert torch.allclose(log_star.exp().sum(1), torch.ones(4), atol=1e-5)
    assert j_star == pytest.approx(beta * float(log_z.mean()), abs=1e-4)
    assert j_star >= j_policy and j_star >= float(enum.expectation(lref, r))
    with pytest.raises(ValueError, match="beta"):
        enum.kl_regularised_optimum(ref, r, 0.0)


def test_train_toy_smoke_improves_the_exact_reward():
    from reinforce_edu.toy.train import ToyTrainConfig, train_toy
    policy = ToyPolicy(TASK, hidden=8, seed=2)
    ref = frozen_copy(policy)
    enum = Enumeration(TASK)
    r = enum.rewards(match_reward)
    before = [p.detach().clone() for p in policy.parameters()]
    hist = train_toy(policy, TASK, match_reward, ToyTrainConfig(steps=30, k=4, lr=0.03, eval_every=10), ref=ref,
                     beta=0.05, metrics={"J": lambda p: enum.expectation(enum.seq_logprobs(p), r)})
    assert hist["step"] == [0, 10, 20, 30] and len(hist["J"]) == 4 and len(hist["batch_kl"]) == 4
    assert hist["J"][-1] > hist["J"][0] + 0.1
    assert all(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))  # every parameter moved
    with pytest.raises(ValueError, match="reserved"):
        train_toy(policy, TASK, match_reward, ToyTrainConfig(steps=1), metrics={"step": lambda p: 0.0})


def test_train_toy_max_grad_norm_zero_turns_clipping_off():
    """max_grad_norm=0 means no clipping (as in TrainConfig): the step equals an unclipped one, not a zero step."""
    from reinforce_edu.toy.train import ToyTrainConfig, train_toy
    runs = []
    for norm in (0.0, 1e9):  # off, and a bound no gradient reaches
        policy = ToyPolicy(TASK, hidden=8, seed=2)
        train_toy(policy, TASK, match_reward, ToyTrainConfig(steps=1, k=4, lr=0.03, max_grad_norm=norm))
        runs.append([p.detach().clone() for p in policy.parameters()])
    start = [p.detach() for p in ToyPolicy(TASK, hidden=8, seed=2).parameters()]
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert all(not torch.equal(a, b) for a, b in zip(runs[0], start))


def test_train_toy_sgd_takes_the_plain_gradient_step():
    """optimizer="sgd": one step moves θ by exactly −lr · ∇L of the same first batch (oracle: by hand)."""
    from reinforce_edu.core.baselines import LeaveOneOutBaseline
    from reinforce_edu.core.losses import reinforce_loss
    from reinforce_edu.toy.train import ToyTrainConfig, train_toy
    policy = ToyPolicy(TASK, hidden=8, seed=2)
    start = [p.detach().clone() for p in policy.parameters()]
    batch = policy.sample(torch.arange(TASK.n_prompts), 4, generator=torch.Generator().manual_seed(0))
    loss = reinforce_loss(policy.log_probs(batch.prompt_ids, batch.tokens),
                          match_reward(TASK, batch.prompt_ids, batch.tokens, batch.mask), batch.mask,
                          baseline=LeaveOneOutBaseline(), group_size=4, prompts=torch.arange(TASK.n_prompts)).loss
    grads = torch.autograd.grad(loss, list(policy.parameters()))
    cfg = ToyTrainConfig(steps=1, k=4, lr=0.1, optimizer="sgd", max_grad_norm=0, seed=0)
    train_toy(policy, TASK, match_reward, cfg)
    for p, p0, g in zip(policy.parameters(), start, grads):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * g, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="optimizer"):
        train_toy(policy, TASK, match_reward, ToyTrainConfig(steps=1, optimizer="rmsprop"))
