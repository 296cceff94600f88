"""reinforce_edu/llm/ppo.py against loops and hand-computed values; the critic learns; a PPO update moves the weights;
a batch split in two (core.split, two threads for two processes) updates as the whole batch."""

import math
import threading

import pytest
import torch

from reinforce_edu.core.credit import aggregate, aggregation_weights
from reinforce_edu.core.split import LOCAL, share
from reinforce_edu.llm.logprobs import completion_logprobs
from reinforce_edu.llm.sampling import sample
from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.ppo import (ValueModel, clipped_surrogate, clipped_value_loss, gae, ppo_update, token_rewards,
                               whiten)

pytestmark = pytest.mark.usefixtures("one_thread_module")


def _mask(lengths, T):
    return (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).float()


def test_gae_matches_the_backward_recursion_loop():
    g = torch.Generator().manual_seed(0)
    B, T, gamma, lam = 4, 6, 0.9, 0.8
    mask = _mask([6, 3, 1, 5], T)
    r, v = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    adv, ret = gae(r, v, mask, gamma, lam)
    for i in range(B):  # A_t = δ_t + γλ A_{t+1}, walked backwards from the last token
        n = int(mask[i].sum())
        running, next_v = 0.0, 0.0
        for t in reversed(range(n)):
            delta = r[i, t].item() + gamma * next_v - v[i, t].item()
            running = delta + gamma * lam * running
            assert math.isclose(adv[i, t].item(), running, rel_tol=1e-5, abs_tol=1e-5)
            assert math.isclose(ret[i, t].item(), running + v[i, t].item(), rel_tol=1e-5, abs_tol=1e-5)
            next_v = v[i, t].item()
    assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()


def test_gae_with_gamma_lambda_one_is_return_minus_value():
    mask = _mask([4, 2], 4)
    rewards = torch.tensor([0.5, -1.0])
    kl = torch.tensor([[0.1, 0.2, -0.1, 0.3], [0.4, 0.0, 9.0, 9.0]])
    r_tok = token_rewards(rewards, mask, kl, beta=0.5)
    assert torch.allclose(r_tok, torch.tensor([[-0.05, -0.1, 0.05, 0.35], [-0.2, -1.0, 0.0, 0.0]]))
    v = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    adv, ret = gae(r_tok, v, mask, 1.0, 1.0)
    to_go = torch.flip(torch.cumsum(torch.flip(r_tok, [1]), 1), [1]) * mask  # Σ_{s≥t} r_s
    torch.testing.assert_close(adv, (to_go - v) * mask)
    torch.testing.assert_close(ret, to_go)


def test_clipped_surrogate_against_hand_computed_values():
    # one token per row: ratio 1.5 or 0.5, advantage +1 or -1, ε = 0.2
    ratios = torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1])
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0])[:, None]
    old = torch.zeros(5, 1)
    logp = ratios.log()[:, None].requires_grad_(True)
    loss, frac = clipped_surrogate(logp, old, adv, torch.ones(5, 1), 0.2, aggregation="sum")
    # per row: max(-ρA, -clip(ρ)A) = -1.2, 1.5, -0.5, 0.8, -2.2  (rows 0 and 3 clipped)
    assert math.isclose(loss.item(), (-1.2 + 1.5 - 0.5 + 0.8 - 2.2) / 5, rel_tol=1e-6)
    assert math.isclose(frac.item(), 2 / 5, rel_tol=1e-6)
    (grad,) = torch.autograd.grad(loss, logp)
    # d/dℓ (−ρA) = −ρA where not clipped, 0 where clipped
    expected = torch.tensor([0.0, 1.5, -0.5, 0.0, -2.2])[:, None] / 5
    torch.testing.assert_close(grad, expected)


def test_first_pass_gradient_is_the_reinforce_gradient():
    g = torch.Generator().manual_seed(2)
    mask = _mask([3, 5, 2], 5)
    logp = (-torch.rand(3, 5, generator=g)).requires_grad_(True)
    adv = torch.randn(3, 5, generator=g) * mask
    for aggregation in ("sum", "token_mean", "seq_mean"):
        loss, frac = clipped_surrogate(logp, logp.detach(), adv, mask, 0.2, aggregation)
        (grad,) = torch.autograd.grad(loss, logp)
        torch.testing.assert_close(grad, -aggregation_weights(mask, aggregation) * adv)  # ρ = 1: −w·Â
        assert frac.item() == 0.0


def test_clipped_value_loss_against_hand_computed_values():
    values = torch.tensor([[1.0, 0.0, 5.0]], requires_grad=True)
    old = torch.tensor([[0.5, 0.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss = clipped_value_loss(values, old, returns, mask, clip_range=0.2)
    # token 0: V=1 (clipped to 0.7): max(1², 1.3²) = 1.69; token 1: max(1, 1) = 1; token 2 masked
    assert math.isclose(loss.item(), 0.5 * (1.69 + 1.0) / 2, rel_tol=1e-6)
    (grad,) = torch.autograd.grad(loss, values)
    torch.testing.assert_close(grad, torch.tensor([[0.0, -0.5, 0.0]]))  # the clipped branch has no gradient


def test_whiten_over_unmasked_entries():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    w = whiten(x, mask)
    vals = w[mask > 0]
    assert abs(vals.mean().item()) < 1e-6 and abs(vals.std().item() - 1) < 1e-6 and w[0, 2] == 0


@pytest.fixture(scope="module")
def tiny():
    model, tok = tiny_llama(seed=0)
    r = sample(model, tok, ["Say something nice.", "Hello!"], k=2, max_new_tokens=5, seed=0)
    return model, tok, r


def test_value_model_is_a_separate_copy_and_starts_at_zero(tiny):
    model, _, r = tiny
    critic = ValueModel(model, trainable=[n for n, _ in model.named_parameters() if ".layers.1." in n])
    v = critic(r.input_ids, r.attention_mask, r.prompt_length)
    assert v.shape == r.completion_mask.shape and v.dtype == torch.float32 and (v == 0).all()
    body = {id(p) for p in critic.body.parameters()}
    assert not body & {id(p) for p in model.parameters()}  # a copy, not shared
    trains = {n for n, p in critic.named_parameters() if p.requires_grad}
    assert trains == {n for n, _ in critic.named_parameters() if ".layers.1." in n or n.startswith("head.")}


def test_value_model_learns_the_returns(tiny):
    model, _, r = tiny
    critic = ValueModel(model)
    target = torch.tensor([0.5, -0.5, 1.0, 0.0])[:, None].expand_as(r.completion_mask)  # per-row returns
    opt = torch.optim.Adam([p for p in critic.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(60):
        v = critic(r.input_ids, r.attention_mask, r.prompt_length)
        loss = clipped_value_loss(v, v.detach(), target, r.completion_mask, clip_range=1e9)  # no clip: plain MSE
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_one_ppo_update_changes_policy_and_critic(tiny):
    model, tok, r = tiny
    import copy
    policy = copy.deepcopy(model).train(False)
    critic = ValueModel(policy)
    params = [p for p in policy.parameters()] + [p for p in critic.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-2)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    head_before = critic.head.weight.detach().clone()
    with torch.no_grad():
        ref = completion_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length)

    def apply(loss):
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return float(norm)

    stats = ppo_update(lambda: completion_logprobs(policy, r.input_ids, r.attention_mask, r.prompt_length),
                       lambda: critic(r.input_ids, r.attention_mask, r.prompt_length),
                       torch.tensor([1.0, -1.0, 0.5, 0.0]), r.completion_mask, apply, ref_logp=ref, beta=0.1,
                       epochs=3)
    assert stats["epochs_done"] == 3 and len(stats["grad_norms"]) == 3
    assert all(math.isfinite(g) and g > 0 for g in stats["grad_norms"])
    assert torch.allclose(stats["kl"], torch.zeros(4), atol=1e-5)  # the first pass: π_old = π_ref
    assert stats["approx_kl"] != 0.0  # by the last pass the policy has moved off π_old
    moved = [n for n, p in policy.named_parameters() if not torch.equal(p, before[n])]
    assert len(moved) == len(before)  # every policy parameter changed
    assert not torch.equal(critic.head.weight, head_before)


def test_a_refused_update_stops_the_passes(tiny):
    model, _, r = tiny
    critic = ValueModel(model)
    calls = []
    stats = ppo_update(lambda: completion_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length),
                       lambda: critic(r.input_ids, r.attention_mask, r.prompt_length),
                       torch.ones(4), r.completion_mask, lambda loss: calls.append(loss) or None, epochs=4)
    assert len(calls) == 1 and stats["epochs_done"] == 0


def test_bad_input_is_rejected():
    mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match="lam"):
        gae(torch.zeros(2, 3), torch.zeros(2, 3), mask, 1.0, 1.5)
    with pytest.raises(ValueError, match="values"):
        gae(torch.zeros(2, 3), torch.zeros(2, 4), mask)
    with pytest.raises(ValueError, match="clip_range"):
        clipped_surrogate(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), mask, -0.1)
    with pytest.raises(ValueError, match="rewards"):
        token_rewards(torch.tensor([1.0, float("nan")]), mask)
    with pytest.raises(ValueError, match="epochs"):
        ppo_update(lambda: None, lambda: None, torch.zeros(2), mask, lambda loss: 0.0, epochs=0)


# -- a batch split across processes (core.split): two threads stand for two processes -------------------------

class _Threads:
    """`total` and `gather_rows` (core.split) between N threads, through shared slots and a barrier."""

    def __init__(self, slots: list, barrier: threading.Barrier, rank: int) -> None:
        self.slots, self.barrier, self.rank = slots, barrier, rank

    def _exchange(self, x):
        self.slots[self.rank] = x.detach().clone()
        self.barrier.wait()
        parts = list(self.slots)
        self.barrier.wait()  # no slot is overwritten before every thread has read them all
        return parts

    def total(self, x):
        parts = self._exchange(x)
        return sum(parts[1:], parts[0])  # Σ_r, in rank order

    def gather_rows(self, x):
        parts = self._exchange(x)
        if x.dim() == 2:  # (B_r, T_r) zero-padded to max_r T_r, as llm.distributed.ProcessGroup does
            width = max(p.shape[1] for p in parts)
            parts = [torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts]
        return torch.cat(parts)


def _ppo_run(rows, batch, W0, V0, ref, rewards, mask, aggregation, epochs=3, lr=3.0):
    """ppo_update on `rows` of the toy batch (cut to their own longest completion), as one process of a split
    batch would: its own copy of the logits W and values V; `apply` sums the gradients over `batch` (Σ_r ∇(s_r L_r))
    and takes an SGD step. Returns (stats, W, V)."""
    T = int(mask[rows].sum(dim=1).max())
    W, V = W0.clone().requires_grad_(True), V0.clone().requires_grad_(True)

    def apply(loss):
        gW, gV = torch.autograd.grad(loss, (W, V))
        gW, gV = batch.total(gW), batch.total(gV)  # the all-reduce of llm.update
        with torch.no_grad():
            W.sub_(lr * gW)
            V.sub_(lr * gV)
        return float(torch.cat([gW.flatten(), gV.flatten()]).norm())

    stats = ppo_update(lambda: torch.log_softmax(W, dim=-1)[rows, :T, 0], lambda: V[rows, :T], rewards[rows],
                       mask[rows, :T], apply, ref_logp=ref[rows, :T], beta=0.2, epochs=epochs, clip_range=0.1,
                       value_clip_range=0.5, lam=0.9, aggregation=aggregation, batch=batch)
    return stats, W.detach(), V.detach()


@pytest.mark.parametrize("aggregation", ["sum", "seq_mean", "token_mean", "constant"])
def test_two_halves_of_a_split_batch_update_as_the_whole_batch(aggregation):
    """Oracle: the whole batch in one process. Rows 0-2 (longest 4 tokens) and 3-5 (longest 6) in two threads,
    each with its share s_r of the loss and the gradients summed: the same whitening, losses, clip fraction,
    approximate KL and advantage std in every epoch, and the same weights after 3 epochs, to float rounding
    (only the order of the sums differs: observed ≤ 2e-7; bound 1e-5 against weight changes of order 0.1)."""
    g = torch.Generator().manual_seed(4)
    B, T = 6, 6
    mask = _mask([4, 2, 3, 6, 1, 5], T)
    W0, V0 = torch.randn(B, T, 3, generator=g), torch.randn(B, T, generator=g)
    ref, rewards = torch.log_softmax(torch.randn(B, T, 3, generator=g), -1)[..., 0], torch.randn(B, generator=g)
    whole, W, V = _ppo_run(slice(0, B), LOCAL, W0, V0, ref, rewards, mask, aggregation)
    assert whole["epochs_done"] == 3 and whole["clip_fraction"] > 0  # the later epochs clip: the ratio moved
    slots, barrier, out = [None, None], threading.Barrier(2, timeout=30), {}

    def worker(rank):
        try:
            out[rank] = _ppo_run(slice(3 * rank, 3 * rank + 3), _Threads(slots, barrier, rank), W0, V0, ref,
                                 rewards, mask, aggregation)
        except BaseException as e:  # noqa: BLE001 - re-raised below, in the test's thread
            barrier.abort()
            out[rank] = e

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for rank in range(2):
        assert not isinstance(out[rank], BaseException), out[rank]
        stats, W_r, V_r = out[rank]
        for key in ("pg_loss", "value_loss", "clip_fraction", "approx_kl", "advantage_std"):
            assert stats[key] == pytest.approx(whole[key], rel=1e-5, abs=1e-7), key
        assert stats["grad_norms"] == pytest.approx(whole["grad_norms"], rel=1e-5)
        torch.testing.assert_close(stats["kl"], whole["kl"][3 * rank:3 * rank + 3])  # its own rows
        assert (W - W0).abs().max() > 0.1 and (V - V0).abs().max() > 0.1  # the comparison below can fail
        torch.testing.assert_close(W_r, W, rtol=0, atol=1e-5)
        torch.testing.assert_close(V_r, V, rtol=0, atol=1e-5)


def test_without_the_shares_the_halves_do_not_add_up():
    """The test above can fail: summing the halves' token means without s_r is not the whole batch's mean."""
    mask = _mask([4, 2, 3, 6, 1, 5], 6)
    x = torch.randn(6, 6, generator=torch.Generator().manual_seed(5))
    whole = aggregate(x, mask, "token_mean")
    halves = [aggregate(x[3 * r:3 * r + 3], mask[3 * r:3 * r + 3], "token_mean") for r in range(2)]
    shares = [share(LOCAL, mask[3 * r:3 * r + 3], "token_mean") for r in range(2)]
    assert shares == [1.0, 1.0]  # LOCAL: each half believes it is the whole batch
    assert not math.isclose(float(sum(halves)), float(whole), rel_tol=1e-3)
    n = [float(mask[3 * r:3 * r + 3].sum()) for r in range(2)]
    assert math.isclose(float(sum(h * k / sum(n) for h, k in zip(halves, n))), float(whole), rel_tol=1e-6)


def test_the_one_process_batch_changes_nothing():
    """LOCAL (the default) gives, bit for bit, the formulas without a split batch: whitening over x[m], the
    aggregate of the token losses, the clip fraction over this batch's tokens, the value loss's token mean."""
    g = torch.Generator().manual_seed(6)
    mask = _mask([4, 2, 3, 6], 6)
    x, old = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    m = mask > 0
    expected = torch.where(m, (x - x[m].mean()) / (x[m].std() + 1e-8), torch.zeros(()))
    assert torch.equal(whiten(x, mask), expected) and torch.equal(whiten(x, mask, batch=LOCAL), expected)
    adv = torch.randn(4, 6, generator=g) * mask
    for aggregation in ("sum", "seq_mean", "token_mean", "constant"):
        loss, frac = clipped_surrogate(x, old, adv, mask, 0.2, aggregation)
        ratio = torch.exp(torch.where(m, x - old, torch.zeros(())))
        per_token = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.2))
        assert torch.equal(loss, aggregate(per_token, mask, aggregation))
        clipped = ((-adv * ratio.clamp(0.8, 1.2)) > (-adv * ratio)) & m
        assert torch.equal(frac, clipped.float().sum() / m.sum())
    v = clipped_value_loss(x, old, adv, mask, 0.3)
    v_clip = old + (x - old).clamp(-0.3, 0.3)
    assert torch.equal(v, aggregate(0.5 * torch.maximum((x - adv) ** 2, (v_clip - adv) ** 2), mask, "token_mean"))
