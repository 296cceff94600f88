"""Which parameters train: all of them, or the last N transformer blocks and the final norm.

The frozen rest is stored in the compute dtype (bf16 where the CPU or GPU multiplies it fast) and the
backward pass stops where training starts. Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import torch


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of transformer blocks of a transformers causal LM (`model.base_model.layers`)."""
    blocks = getattr(model.base_model, "layers", None)
    if not isinstance(blocks, torch.nn.ModuleList):
        raise ValueError(f"trainable_blocks needs a model whose base model has a `layers` ModuleList "
                         f"(Llama-like); {type(model).__name__} has none. Use trainable_blocks=0")
    return blocks


def trainable_parameter_names(model: torch.nn.Module, trainable_blocks: int = 0) -> list[str]:
    """Names of the parameters that train: all (0), or those of the last N blocks + the final norm.

    With N > 0 the output layer does not train: in a model with tied embeddings (SmolLM2) it
    *is* the input embedding, and training it would send the backward pass through every block.
    """
    if trainable_blocks == 0:
        return [n for n, _ in model.named_parameters()]
    blocks = transformer_blocks(model)
    if trainable_blocks > len(blocks):
        raise ValueError(f"trainable_blocks={trainable_blocks} but the model has {len(blocks)} blocks")
    keep = {id(p) for b in blocks[-trainable_blocks:] for p in b.parameters()}
    norm = getattr(model.base_model, "norm", None)
    if isinstance(norm, torch.nn.Module):
        keep |= {id(p) for p in norm.parameters()}
    return [n for n, p in model.named_parameters() if id(p) in keep]


def prepare_policy(model: torch.nn.Module, names: list[str], dtype: torch.dtype) -> torch.nn.Module:
    """Freeze every parameter not in `names`; store the frozen ones in `dtype`, the trainable ones in fp32.

    Under bf16/fp16 autocast the frozen weights would be cast to it at every matmul anyway;
    casting them once saves the time and half their memory (in fp32 nothing changes). The trainable ones are the fp32
    "master weights" AdamW updates (a bf16 weight would round away updates smaller than 2^-8 of it).
    """
    train = set(names)
    for n, p in model.named_parameters():
        p.requires_grad_(n in train)
        p.data = p.data.float() if n in train else p.data.to(dtype)
    return model.eval()  # eval: no dropout, so the scoring pass matches the sampling pass
