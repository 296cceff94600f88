"""The long toy task and its tools: block rewards vs a loop, sampled J vs the exact J at small T,
per-sample credit gradients vs a loop of backward passes, the learned value (ridge) on an exact target,
sharpening at fixed scale vs scaling the output layer, and the outlier reward."""

import copy

import pytest
import torch

from reinforce_edu.core.credit import completion_mask
from reinforce_edu.core.per_sample import loop_per_sample_grads
from reinforce_edu.toy.enumeration import Enumeration
from reinforce_edu.toy.estimates import token_scores
from reinforce_edu.toy.long_task import (block_rewards, credit_gradients, grouped_total_variance, long_task,
                                         mean_se, sampled_objective)
from reinforce_edu.toy.outlier import OutlierReward
from reinforce_edu.toy.rewards import match_reward, match_token_rewards
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask, scaled_copy, sharpened_copy
from reinforce_edu.toy.value import fit_value, predict_value, prefix_features

pytestmark = pytest.mark.usefixtures("one_thread_module")


def _block_loop(task, prompt_ids, tokens, mask, every):
    dense = match_token_rewards(task, prompt_ids, tokens, mask)
    out = torch.zeros_like(dense)
    for i in range(tokens.shape[0]):
        last = int(mask[i].sum()) - 1
        for t in range(last + 1):
            pay = min((t // every + 1) * every - 1, last)
            out[i, pay] += dense[i, t]
    return out


@pytest.mark.parametrize("every", [1, 3, 8])
def test_block_rewards_match_a_loop_and_keep_the_return(every):
    task = long_task(12, seed=1)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, task.vocab_size, (9, 12), generator=g)  # random EOS positions
    tokens[0] = task.target_tokens()[0]  # one perfect answer
    mask = completion_mask(tokens, task.eos)
    ids = torch.arange(9) % task.n_prompts
    r = block_rewards(task, ids, tokens, mask, every=every)
    torch.testing.assert_close(r, _block_loop(task, ids, tokens, mask, every))
    torch.testing.assert_close(r.sum(1), match_reward(task, ids, tokens, mask))
    assert r[0].sum().item() == pytest.approx(1.0)


def test_long_task_shape_and_checks():
    task = long_task(32)
    assert task.max_len == 32 and all(len(t) == 31 for t in task.targets) and task.n_prompts == 4
    with pytest.raises(ValueError, match="length"):
        long_task(1)


def test_sampled_objective_agrees_with_the_exact_value_at_small_T():
    task = ToyTask()
    policy = ToyPolicy(task, hidden=8, seed=3)
    enum = Enumeration(task)
    with torch.no_grad():
        exact = float(enum.expectation(enum.seq_logprobs(policy), enum.rewards(match_reward)))
    mean, se = sampled_objective(policy, 2000, seed=0)
    assert se > 0 and abs(mean - exact) < 4 * se


def test_credit_gradients_match_a_loop_and_token_scores():
    task = ToyTask()
    policy = ToyPolicy(task, hidden=6, seed=1)
    b = policy.sample(torch.arange(task.n_prompts), 3, generator=torch.Generator().manual_seed(2))
    adv = torch.randn(b.tokens.shape, generator=torch.Generator().manual_seed(3))  # (B, T) any advantages
    g = credit_gradients(policy, b.prompt_ids, b.tokens, b.mask, adv)

    def loss(model, prompt, toks, m, a):
        logp = model.log_probs(prompt[None], toks[None])[0]
        return (m * a * logp).sum()

    loop = loop_per_sample_grads(policy, loss, b.prompt_ids, b.tokens, b.mask, adv)
    torch.testing.assert_close(g, loop, atol=1e-5, rtol=1e-4)
    s = token_scores(policy, b.prompt_ids, b.tokens, b.mask)  # (B, T, D)
    torch.testing.assert_close(g, (adv[..., None] * s).sum(1), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="advantages"):
        credit_gradients(policy, b.prompt_ids, b.tokens, b.mask, adv[:, :2])


def test_grouped_total_variance_is_the_trace_of_the_covariance():
    g = torch.randn(40, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2, 3, 4, 5])
    groups, total = grouped_total_variance(g, 4)
    assert groups.shape == (10,)
    torch.testing.assert_close(total, g.double().var(0).sum())
    m, se = mean_se(groups)
    assert m == pytest.approx(float(total)) and se > 0
    with pytest.raises(ValueError, match="group_size"):
        grouped_total_variance(g, 7)


def test_prefix_features_are_the_states_the_policy_reads():
    task = ToyTask()
    policy = ToyPolicy(task, hidden=6, seed=0)
    b = policy.sample(torch.arange(task.n_prompts), 2, generator=torch.Generator().manual_seed(1))
    phi = prefix_features(policy, b.prompt_ids, b.tokens)  # (B, T, H + T)
    H, T = 6, task.max_len
    with torch.no_grad():
        torch.testing.assert_close(policy.head(phi[..., :H]), policy(b.prompt_ids, b.tokens))  # logits from h_t
    torch.testing.assert_close(phi[..., H:], torch.eye(T).expand(len(b.tokens), T, T))


def test_fit_value_recovers_an_exact_linear_target_on_the_masked_positions():
    g = torch.Generator().manual_seed(0)
    phi = torch.randn(50, 7, 4, generator=g)
    w_true = torch.tensor([0.5, -1.0, 2.0, 0.25])
    mask = (torch.rand(50, 7, generator=g) > 0.3).float()
    targets = torch.where(mask > 0, phi @ w_true, torch.full((50, 7), 1e3))  # garbage where masked
    w = fit_value(phi, targets, mask, ridge=0.0)
    torch.testing.assert_close(w, w_true, atol=1e-4, rtol=1e-4)
    v = predict_value(phi, w, mask)
    assert float(v[mask == 0].abs().max()) == 0.0
    with pytest.raises(ValueError, match="ridge"):
        fit_value(phi, targets, mask, ridge=-1.0)


@pytest.mark.parametrize("s", [0.5, 3.0])
def test_sharpened_copy_samples_like_scaled_copy_with_the_gradient_of_unit_scale(s):
    task = ToyTask()
    policy = ToyPolicy(task, hidden=6, seed=2)
    sharp, scaled = sharpened_copy(policy, s), scaled_copy(policy, s)
    b = policy.sample(torch.arange(task.n_prompts), 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(sharp(b.prompt_ids, b.tokens), scaled(b.prompt_ids, b.tokens), atol=1e-5, rtol=1e-5)
    s_sharp = token_scores(sharp, b.prompt_ids, b.tokens, b.mask)  # vmap through the detached offset
    s_scaled = token_scores(scaled, b.prompt_ids, b.tokens, b.mask)
    head = policy.head.weight.numel() + policy.head.bias.numel()
    factor = torch.full((s_sharp.shape[-1],), s)
    factor[-head:] = 1.0  # the output layer's own gradient is the same; everything below it × s
    torch.testing.assert_close(s_scaled, s_sharp * factor, atol=1e-5, rtol=1e-4)

    def loss(model, prompt, toks, m):
        return (m * model.log_probs(prompt[None], toks[None])[0]).sum()

    loop = loop_per_sample_grads(sharp, loss, b.prompt_ids, b.tokens, b.mask)  # autograd, no vmap
    torch.testing.assert_close(s_sharp.sum(1), loop, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="inverse_temperature"):
        sharpened_copy(policy, 0.0)


def test_outlier_reward_changes_one_sample_at_one_call():
    task = ToyTask()
    policy = ToyPolicy(task, hidden=6, seed=0)
    b = policy.sample(torch.arange(task.n_prompts), 4, generator=torch.Generator().manual_seed(0))
    args = (task, b.prompt_ids, b.tokens, b.mask)
    base = match_reward(*args)
    fn = OutlierReward(match_reward, at_call=2, value=100.0)
    torch.testing.assert_close(fn(*args), base)  # call 1: untouched
    hit = fn(*args)  # call 2: the lowest-reward sample is paid 100
    row = int(base.argmin())
    assert fn.hit == row and hit[row] == 100.0
    torch.testing.assert_close(torch.cat([hit[:row], hit[row + 1:]]), torch.cat([base[:row], base[row + 1:]]))
    torch.testing.assert_close(fn(*args), base)  # call 3: untouched again
    dense = OutlierReward(match_token_rewards, at_call=1, value=50.0, row=3)(*args)  # (B, T): paid at the end
    assert dense[3].sum().item() == pytest.approx(50.0)
    assert dense[3, int(b.mask[3].sum()) - 1].item() == pytest.approx(50.0)
    with pytest.raises(TypeError, match="reward_fn"):
        OutlierReward(3, at_call=1)
