"""What makes the trainer fast without changing what it computes: the attention kernel per pass,
frozen weights stored in the compute dtype, a fused AdamW.

The trainer's other speed choices, and where they live: every forward in the precision the hardware
does fast (perf.precision: bf16 autocast where a CPU or GPU multiplies bf16 natively, fp16 + loss
scaling on a GPU without bf16, else fp32; log-probs upcast to fp32 before the logsumexp); only
completion positions reach the output layer and each prompt goes through the model once, not k times,
its key/value cache repeated for its k samples (llm.sampling, llm.logprobs); one no-grad pass of π_ref,
the policy's own training pass giving log π_θ for the KL; log π, its gradient and the entropy from one
softmax (llm.logprobs.token_logprobs); on a CPU plain-matmul attention in the scoring passes and the
fused kernel in sampling, each where it is faster (`attention_kernel`); freed memory kept in the
process so the next step's tensors do not page-fault on fresh memory (perf.allocator). `torch.compile`
does not pay on a CPU (benchmarks/torch_compile.py).

Each was measured on the course's CPUs (benchmarks/README.md). The kernel choice per pass is tested in
tests/test_trainer.py; frozen weights stored in bf16 compute what bf16 autocast would cast them to anyway.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def attention_kernel(model: torch.nn.Module, name: str):
    """Run `model` with the attention implementation `name` ("eager", "sdpa") inside the block; restored after.

    A no-op for a model that is already set so, or that cannot switch (no `set_attn_implementation`).
    """
    previous = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if previous is None or previous == name or not hasattr(model, "set_attn_implementation"):
        yield model
        return
    model.set_attn_implementation(name)
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)


def store_frozen_linears(blocks: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Store the weights of the frozen linear layers inside `blocks` (a model's transformer blocks) in `dtype`, in place.

    Under autocast every matmul casts its fp32 weight to the compute dtype at every pass; a frozen
    model (π_ref) can hold the cast copy instead: the same values, once, in half the memory. The
    embedding (tied to the output layer in SmolLM2) and the norms keep their dtype. Linear layers are
    `nn.Linear` and GPT-2's `Conv1D` (transformers' linear layer with a transposed weight).
    """
    if dtype == torch.float32:
        return blocks
    for module in blocks.modules():
        linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
        if linear and not module.weight.requires_grad:
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)
    return blocks


def fused_adamw(params: list, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused into one kernel per step where torch has one (CPU and CUDA)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type in ("cpu", "cuda") or None)
