"""roofline: a phase's matmul calls, recorded exactly and replayed alone."""

import pytest
import torch

from reinforce_edu.perf.measure import count_flops
from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.perf.roofline import MatmulCall, record_matmuls, replay_matmuls


def linear_step(layer, x):
    layer(x).square().sum().backward()
    return layer.weight.grad


def test_record_matmuls_sees_forward_and_backward_with_their_layouts():
    torch.manual_seed(0)
    layer, x = torch.nn.Linear(16, 8), torch.randn(5, 16, requires_grad=True)
    calls, grad = record_matmuls(lambda: linear_step(layer, x))
    assert grad.shape == (8, 16)
    assert [c.op for c in calls] == ["addmm", "mm", "mm"]  # y = b + x Wᵀ; dx = dy W; dW = dyᵀ x
    fwd, *bwd = calls
    assert fwd.args[1][:3] == ((5, 16), (16, 1), torch.float32)  # x
    assert fwd.args[2][:2] == ((16, 8), (1, 16))  # Wᵀ: a transposed view, and recorded as one
    assert sorted(c.args[0][0] + c.args[1][0] for c in bwd) == sorted([(5, 8, 8, 16), (8, 5, 5, 16)])
    assert all(c.flops == 2 * 5 * 16 * 8 for c in calls)
    layer.weight.grad = x.grad = None
    flops, _ = count_flops(lambda: linear_step(layer, x))
    assert sum(c.flops for c in calls) == flops  # the same count as torch's flop counter


def test_record_matmuls_of_a_model_matches_the_flop_counter():
    model, _ = tiny_llama(seed=0)
    model.set_attn_implementation("eager")  # attention as bmm/matmul, not one fused kernel
    ids = torch.randint(0, 64, (2, 6))
    calls, _ = record_matmuls(lambda: model(ids).logits.sum().backward())
    model.zero_grad()
    flops, _ = count_flops(lambda: model(ids).logits.sum().backward())
    assert {c.op for c in calls} <= {"mm", "bmm", "addmm", "baddbmm"} and len(calls) > 20
    assert sum(c.flops for c in calls) == flops


def test_replay_runs_exactly_the_recorded_calls():
    a, b = torch.randn(6, 4), torch.randn(4, 3)
    x, y = torch.randn(2, 6, 4, dtype=torch.bfloat16), torch.randn(2, 4, 5, dtype=torch.bfloat16)
    calls, _ = record_matmuls(lambda: (a @ b, torch.bmm(x, y), a.t() @ a, a @ b))
    assert [c.op for c in calls] == ["mm", "bmm", "mm", "mm"] and calls[0] == calls[3]
    replayed, seconds = record_matmuls(lambda: replay_matmuls(calls, repeats=2, copies=3))
    assert replayed == calls * 3  # one warm-up pass + 2 timed: the same ops, shapes, strides, dtypes
    assert seconds > 0.0
    assert replay_matmuls([]) == 0.0


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(calls="mm"), TypeError, "calls must be a list of MatmulCall"),
    (dict(calls=[MatmulCall("mm", (), (), 0)], repeats=0), ValueError, "repeats must be an int >= 1"),
    (dict(calls=[], copies=1.5), ValueError, "copies must be an int >= 1"),
])
def test_replay_refuses_bad_input(kwargs, err, match):
    with pytest.raises(err, match=match):
        replay_matmuls(**kwargs)


def test_record_refuses_a_non_callable():
    with pytest.raises(TypeError, match="fn must be callable"):
        record_matmuls(42)
