r"""Per-sample gradients with `torch.func`: vmap over grad, one gradient per sample.

For a loss ℓ(θ; z_i) of one sample z_i, we want the (N, D) matrix of g_i = ∇_θ ℓ(θ; z_i),
not just their mean. A Python loop of N backward passes does it slowly;
`torch.func.vmap(torch.func.grad(ℓ))` does it in one vectorised call.

    g_i = ∇_θ ℓ(θ; z_i),   i = 1..N        ->  (N, D)

Taught in notebooks/02_baselines_and_variance.ipynb; used on the real LLM in lesson 06.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap


def _select_params(model: nn.Module, params: Sequence[str] | None) -> dict[str, Tensor]:
    named = dict(model.named_parameters())
    if params is None:
        return {n: p.detach() for n, p in named.items() if p.requires_grad}
    if isinstance(params, str):
        raise TypeError("params must be a sequence of parameter names, not a single str")
    missing = [n for n in params if n not in named]
    if missing:
        raise ValueError(f"params names not in the model: {missing[:5]}")
    if len(params) == 0:
        raise ValueError("params is empty; pass None for all trainable parameters")
    return {n: named[n].detach() for n in params}


def _check_inputs(inputs: tuple) -> int:
    if not inputs:
        raise ValueError("inputs is empty; pass at least one (N, ...) tensor")
    n = None
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"inputs[{i}] must be a torch.Tensor, got {type(x).__name__}")
        n = x.shape[0] if (n is None and x.dim() > 0) else n
        if x.dim() == 0 or x.shape[0] != n:
            raise ValueError(f"inputs[{i}] must have leading (batch) dimension {n}, got shape {tuple(x.shape)}")
    if n == 0:
        raise ValueError("inputs have an empty batch (N = 0)")
    return n


def per_sample_grad_fn(model: nn.Module, sample_loss: Callable[..., Tensor], n_inputs: int, *,
                       params: Sequence[str] | None = None, chunk_size: int | None = None,
                       compile: bool = False) -> Callable[..., Tensor]:
    """Build once, call many times: ``fn(*inputs) -> (N, D)`` per-sample gradients.

    The parameters are read from `model` at each call. With `compile=True` the
    vectorised function goes through `torch.compile` (a one-off compile of ~15 s,
    then far less per-call overhead: worth it when called many times on small models).
    """
    names = list(_select_params(model, params))

    def loss_one(theta: dict[str, Tensor], *sample: Tensor) -> Tensor:
        def out_fn(*args: Tensor, **kwargs) -> Tensor:
            return functional_call(model, theta, args, kwargs, strict=False)
        return sample_loss(out_fn, *sample)

    vectorised = vmap(grad(loss_one), in_dims=(None,) + (0,) * n_inputs, chunk_size=chunk_size)
    if compile:
        vectorised = torch.compile(vectorised)

    def fn(*inputs: Tensor) -> Tensor:
        n = _check_inputs(inputs)
        if len(inputs) != n_inputs:
            raise ValueError(f"expected {n_inputs} input tensors, got {len(inputs)}")
        named = dict(model.named_parameters())
        grads = vectorised({k: named[k].detach() for k in names}, *inputs)
        return torch.cat([grads[k].reshape(n, -1) for k in names], dim=1)  # (N, D)

    return fn


def per_sample_grads(model: nn.Module, sample_loss: Callable[..., Tensor], *inputs: Tensor,
                     params: Sequence[str] | None = None, chunk_size: int | None = None) -> Tensor:
    """Gradients of `sample_loss` for each sample, flattened: (N, D).

    sample_loss(out_fn, *one_sample) -> scalar, where `out_fn(*args)` runs the model
    with the parameters being differentiated (a `functional_call`) and `one_sample`
    are the i-th slices of `inputs` (each input: (N, ...)). `params` restricts the
    gradient to those parameter names (others stay fixed); D is their total size, in
    the order given (or `model.named_parameters()` order). `chunk_size` bounds memory.
    """
    _check_inputs(inputs)
    return per_sample_grad_fn(model, sample_loss, len(inputs), params=params, chunk_size=chunk_size)(*inputs)


def loop_per_sample_grads(model: nn.Module, sample_loss: Callable[..., Tensor], *inputs: Tensor,
                          params: Sequence[str] | None = None) -> Tensor:
    """The same (N, D) matrix with a Python loop of N backward passes: the reference."""
    theta = _select_params(model, params)
    named = dict(model.named_parameters())
    tensors = [named[name] for name in theta]
    rows = []
    for i in range(inputs[0].shape[0]):
        sample = [x[i] for x in inputs]
        loss = sample_loss(model, *sample)
        gs = torch.autograd.grad(loss, tensors, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(t) if g is None else g).reshape(-1) for g, t in zip(gs, tensors)]))
    return torch.stack(rows)  # (N, D)
