"""reinforce_edu.core.significance.mean_se_along: the vectorised mean ± SE against `mean_se` column by column.

(`mean_se`, `paired_difference` and friends are tested by hand in tests/test_toy_methods.py.)
"""

import math

import pytest
import torch

from reinforce_edu.core.significance import mean_se, mean_se_along


@pytest.mark.parametrize("shape, dim", [((5, 26), 0), ((10, 9), 0), ((7, 3), 1), ((4, 6, 3), 1), ((4, 6, 3), -1)])
def test_mean_se_along_matches_mean_se_per_column(shape, dim):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 1
    mean, se = mean_se_along(x, dim)
    cols = x.movedim(dim, -1).reshape(-1, x.shape[dim])  # one row per column of x along dim
    ref = [mean_se(row.tolist()) for row in cols]  # pure-Python mean and sd with n − 1
    expected_shape = x.movedim(dim, -1).shape[:-1]
    assert mean.shape == se.shape == expected_shape
    # float64 sums in a different order: agreement to ~1e-15 relative, 1e-12 leaves room
    assert mean.reshape(-1).tolist() == pytest.approx([m for m, _ in ref], rel=1e-12, abs=1e-12)
    assert se.reshape(-1).tolist() == pytest.approx([s for _, s in ref], rel=1e-12)


def test_mean_se_along_uses_n_minus_1_and_keeps_dtype():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [5.0, 4.0]])  # float32, (seeds=3, steps=2)
    mean, se = mean_se_along(x)
    # column 0: mean 3, sd = √((4 + 0 + 4) / 2) = 2, SE = 2/√3; with n (not n − 1) it would be √(8/3)/√3
    assert mean.tolist() == pytest.approx([3.0, 4 / 3])
    assert se[0].item() == pytest.approx(2 / math.sqrt(3), rel=1e-6)
    assert mean.dtype == se.dtype == torch.float32
    # the very expression the lessons used to write by hand, bit for bit
    y = torch.rand(5, 26, generator=torch.Generator().manual_seed(1))
    m, s = mean_se_along(y, 0)
    assert torch.equal(m, y.mean(0)) and torch.equal(s, y.std(0) / 5 ** 0.5)


@pytest.mark.parametrize("x, dim, err, match", [
    ([[1.0, 2.0], [3.0, 4.0]], 0, TypeError, "x must be a torch.Tensor"),
    (torch.tensor([[1, 2], [3, 4]]), 0, TypeError, "floating-point"),
    (torch.ones(1, 4), 0, ValueError, "at least 2 values along dim 0"),
    (torch.ones(3, 4), 2, ValueError, "dim must be an axis"),
    (torch.ones(3, 4), True, ValueError, "dim must be an axis"),
    (torch.tensor([[1.0, float("nan")], [1.0, 2.0]]), 0, ValueError, "NaN"),
])
def test_mean_se_along_bad_input_is_named(x, dim, err, match):
    with pytest.raises(err, match=match):
        mean_se_along(x, dim)


def test_mean_se_takes_a_1d_tensor_as_it_takes_a_list():
    x = torch.randn(12, generator=torch.Generator().manual_seed(2))  # float32: read as float64 values
    assert mean_se(x) == mean_se([float(v) for v in x.double()])
    m, se = mean_se(x)  # against torch's own float64 mean and sd (n − 1)
    assert m == pytest.approx(float(x.double().mean()), rel=1e-12)
    assert se == pytest.approx(float(x.double().std() / math.sqrt(12)), rel=1e-12)
    with pytest.raises(ValueError, match="1-D"):
        mean_se(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="at least 2"):
        mean_se(torch.zeros(1))
