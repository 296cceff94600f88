"""Where a causal LM keeps its transformer blocks and final norm: one table for every layout we know.

transformers names the same parts differently per family:

    family (examples)                 blocks (under model.base_model)   final norm
    Llama, Qwen2, Mistral, Gemma, …   layers                             norm
    GPT-2, Falcon, BLOOM              h                                  ln_f
    GPT-NeoX, Pythia                  layers                             final_layer_norm
    OPT                               decoder.layers                     decoder.final_layer_norm

Everything that reaches inside a model (`trainable_blocks`, the reward model's early exit, the
critic's width) asks here, and a model of another layout gets a ValueError naming its class.
Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

from torch import nn

LAYOUTS = (("layers", "norm"), ("h", "ln_f"), ("layers", "final_layer_norm"),
           ("decoder.layers", "decoder.final_layer_norm"))
"""(blocks, final norm) attribute paths under `model.base_model`, tried in this order."""


def _get(module: nn.Module, path: str) -> object:
    for name in path.split("."):
        module = getattr(module, name, None)
    return module


def _layout(model: nn.Module) -> tuple[nn.ModuleList, nn.Module | None]:
    """(blocks, final norm or None) of `model`, else a ValueError naming the model class."""
    base = getattr(model, "base_model", model)
    found = [(_get(base, b), _get(base, n)) for b, n in LAYOUTS]
    found = [(b, n if isinstance(n, nn.Module) else None) for b, n in found
             if isinstance(b, nn.ModuleList) and len(b) > 0]
    if found:  # the first layout whose norm exists too (GPT-NeoX has `layers` but no `norm`)
        return next((f for f in found if f[1] is not None), found[0])
    known = ", ".join(f"base_model.{b}" for b, _ in LAYOUTS)
    raise ValueError(f"{type(model).__name__}: unknown model layout, no list of transformer blocks at {known}; "
                     f"add its (blocks, norm) paths to reinforce_edu.llm.architecture.LAYOUTS, or use "
                     f"trainable_blocks=0 and a reward that does not read hidden states (--reward gold)")


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a causal LM, first to last (`model.model.layers`, `model.transformer.h`, …)."""
    return _layout(model)[0]


def final_norm(model: nn.Module) -> nn.Module | None:
    """The norm after the last block (`model.model.norm`, `model.transformer.ln_f`, …); None if the layout has none."""
    return _layout(model)[1]


def hidden_size(model: nn.Module) -> int:
    """Width H of the hidden states: config.hidden_size (GPT-2's n_embd maps to it), else the embedding width."""
    size = getattr(getattr(model, "config", None), "hidden_size", None)
    return int(size) if size is not None else int(model.get_input_embeddings().embedding_dim)


def describe(model: nn.Module) -> str:
    """A short name of the architecture, e.g. "llama, 30 layers, vocabulary 49152" (recorded with a reward head)."""
    config = model.config
    return f"{config.model_type}, {config.num_hidden_layers} layers, vocabulary {config.vocab_size}"
