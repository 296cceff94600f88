r"""Sampling completions from a causal LM and scoring them: the LLM's rollout and its log π_θ.

REINFORCE needs two things from the policy: samples y ∼ π_θ(·|x), and the log-probability
of exactly those samples under exactly the distribution they were drawn from,

    log π_θ(y|x) = Σ_t log π_θ(y_t | x, y_<t),
    log π_θ(y_t | ·) = z_t[y_t] − logsumexp_v z_t[v]        (z_t: the logits at step t, (V,))

`sample` draws B = P·k completions (k per prompt, prompt-major) with temperature 1 and no
top-k / top-p truncation. That is deliberate: the gradient estimator
E[(R − b) ∇log π_θ(y)] is unbiased only if y really comes from π_θ. Top-k or top-p sampling
draws from a *different*, truncated distribution, and a temperature τ ≠ 1 draws from
softmax(z/τ); the log-probs would then have to be computed from the same truncated or
rescaled distribution. (transformers' `generate` applies top_k=50 unless told otherwise,
so `sample` passes top_k=0, top_p=1.0 and neutral settings for every other logits processor.)

`completion_logprobs` scores the completions in one forward pass. It computes logits only
at completion positions (the hidden states of the prompt never meet the (H, V) output
matrix), upcasts them to fp32, and takes gather − logsumexp: no (B, T, V) log-softmax copy.

Layout: left padding, so every prompt ends at column L − T and completion token t of every
row sits at column L − T + t; its logits come from column L − T + t − 1.

Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ._checks import check_positive_int, check_tensor
from .credit import completion_mask


@dataclass
class Rollout:
    """B = P·k sampled completions, k per prompt, prompt-major (rows i·k … i·k + k − 1 share prompt i)."""

    prompts: list[str]
    """(P,) the raw prompts, before chat formatting"""
    input_ids: Tensor
    """(B, L) left-padded chat prompt followed by the completion (pad = EOS after the first EOS)"""
    attention_mask: Tensor
    """(B, L) 0 on left padding, 1 elsewhere (completion positions included)"""
    completion_mask: Tensor
    """(B, T) 1 on completion tokens up to and including the first EOS, 0 after"""
    prompt_length: int
    """L − T: the column where completions start"""
    completions: list[str]
    """(B,) decoded completion text (special tokens dropped)"""
    k: int = 1
    """samples per prompt"""

    @property
    def completion_ids(self) -> Tensor:
        """(B, T) the sampled tokens."""
        return self.input_ids[:, self.prompt_length:]

    @property
    def lengths(self) -> Tensor:
        """(B,) completion lengths |y_i| in tokens (EOS included)."""
        return self.completion_mask.sum(dim=1)

    @property
    def repeated_prompts(self) -> list[str]:
        """(B,) the prompt of each row."""
        return [p for p in self.prompts for _ in range(self.k)]


def check_prompts(prompts: object, name: str = "prompts") -> list[str]:
    """A non-empty list of strings, else a clear TypeError / ValueError."""
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise TypeError(f"{name} must be a list of str, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError(f"{name} is empty; need at least one prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(p).__name__}")
    return list(prompts)


def chat_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> list[str]:
    """Wrap each prompt as a user turn with the tokenizer's chat template, ending with the header
    of the model's reply (add_generation_prompt=True). Without a chat template, the prompts are
    returned unchanged. (P,) -> (P,)."""
    prompts = check_prompts(prompts)
    if getattr(tokenizer, "chat_template", None) is None:
        return prompts
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                          add_generation_prompt=True) for p in prompts]


def eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that end a completion: the model's generation EOS (an int or a list), else the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("neither the model's generation_config nor the tokenizer defines an EOS token")
    return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]


def context_length(model: PreTrainedModel) -> int | None:
    """The longest sequence the model's positions cover (max_position_embeddings), if known."""
    return getattr(model.config, "max_position_embeddings", None)


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str], k: int = 1, *, chat: bool = True,
                   max_length: int | None = None) -> tuple[Tensor, Tensor]:
    """Tokenise P prompts, each repeated k times (prompt-major), left-padded.

    Returns input_ids, attention_mask: (P·k, L). Raises ValueError naming the first prompt
    whose token count exceeds `max_length` (the room left in the context).
    """
    prompts = check_prompts(prompts)
    k = check_positive_int(k, "k")
    texts = chat_prompts(tokenizer, prompts) if chat else prompts
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                    add_special_tokens=not (chat and getattr(tokenizer, "chat_template", None)))
    n_tokens = enc["attention_mask"].sum(dim=1)  # (P,)
    if max_length is not None and int(n_tokens.max()) > max_length:
        i = int(n_tokens.argmax())
        raise ValueError(f"prompts[{i}] is {int(n_tokens[i])} tokens long (chat-formatted), longer than the "
                         f"{max_length} tokens the context leaves for a prompt (context minus max_new_tokens); "
                         f"shorten it or lower max_new_tokens")
    ids = enc["input_ids"].repeat_interleave(k, dim=0)  # (P·k, L)
    mask = enc["attention_mask"].repeat_interleave(k, dim=0)  # (P·k, L)
    return ids, mask


@torch.no_grad()
def sample(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], k: int,
           max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           seed: int | None = None, chat: bool = True) -> Rollout:
    """Sample k completions of each prompt with KV-cached `model.generate`. Returns a `Rollout` (B = P·k rows).

    temperature 1 and no top-k / top-p (the defaults) sample from π_θ itself, so
    `completion_logprobs` gives the exact log-probs of the sampling distribution. With
    `seed`, sampling uses a private RNG stream (the global torch RNG is left untouched);
    without, it draws from the global torch RNG. Run it under `torch.autocast` for bf16 speed.
    Generation stops at EOS (the row is then padded with the pad token) or after
    `max_new_tokens`; completion_mask marks the tokens up to and including the first EOS.
    """
    prompts = check_prompts(prompts)
    k = check_positive_int(k, "k")
    max_new_tokens = check_positive_int(max_new_tokens, "max_new_tokens")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    ctx = context_length(model)
    room = None if ctx is None else ctx - max_new_tokens
    if room is not None and room < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the model's "
                         f"context of {ctx} tokens")
    device = next(model.parameters()).device
    input_ids, attention_mask = encode_prompts(tokenizer, prompts, k, chat=chat, max_length=room)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    eos = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    settings = dict(  # every logits processor neutral unless asked: samples come from π_θ (or softmax(z/τ))
        do_sample=True, temperature=float(temperature), top_k=0 if top_k is None else int(top_k),
        top_p=1.0 if top_p is None else float(top_p), min_p=None, typical_p=1.0, epsilon_cutoff=0.0,
        eta_cutoff=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0, bad_words_ids=None,
        suppress_tokens=None, begin_suppress_tokens=None, min_new_tokens=0, num_beams=1,
        renormalize_logits=False, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)  # (B, L)
    L0 = input_ids.shape[1]
    new = out[:, L0:]  # (B, T)
    if new.shape[1] == 0:
        raise RuntimeError("generate returned no new tokens")
    # one EOS id stands for all of them, so the library's first-EOS mask applies
    tokens = torch.where(torch.isin(new, torch.tensor(eos, device=new.device)), eos[0], new)
    cmask = completion_mask(tokens, eos[0]).to(device)  # (B, T)
    full_mask = torch.cat([attention_mask, torch.ones_like(new)], dim=1)  # (B, L)
    texts = tokenizer.batch_decode([row[m.bool()] for row, m in zip(new, cmask)], skip_special_tokens=True)
    return Rollout(prompts=prompts, input_ids=out, attention_mask=full_mask, completion_mask=cmask,
                   prompt_length=L0, completions=texts, k=k)


def position_ids(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding: p_j = (Σ_{i≤j} m_i) − 1, 0 on padding. (B, L) -> (B, L).

    The same positions `generate` uses, so the scoring pass sees what sampling saw.
    """
    pos = attention_mask.long().cumsum(dim=1) - 1
    return pos.masked_fill(attention_mask == 0, 0)


def completion_logprobs(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor, prompt_length: int, *,
                        temperature: float = 1.0, return_entropy: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    r"""log π_θ(y_t | x, y_<t) of the completion tokens, in fp32. (B, L) -> (B, T), T = L − prompt_length.

    The base model gives hidden states (B, L, H); only the T completion positions go through
    the output layer, and log π = z[y] − logsumexp(z) on fp32 logits (z = logits / temperature;
    pass the temperature the samples were drawn with). Differentiable; wrap in torch.no_grad()
    for the frozen reference. With `return_entropy`, also returns the exact per-token entropy
    H_t = logsumexp(z) − Σ_v softmax(z)_v z_v, (B, T), detached.
    """
    check_tensor(input_ids, "input_ids", ndim=2, integer=True)
    check_tensor(attention_mask, "attention_mask", ndim=2)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                         f"got {tuple(attention_mask.shape)}")
    L = input_ids.shape[1]
    if isinstance(prompt_length, bool) or not isinstance(prompt_length, int) or not 1 <= prompt_length < L:
        raise ValueError(f"prompt_length must be an int in [1, {L - 1}] (L = {L}), got {prompt_length!r}")
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                              position_ids=position_ids(attention_mask), use_cache=False).last_hidden_state  # (B, L, H)
    h = hidden[:, prompt_length - 1:L - 1]  # (B, T, H): the positions that predict completion tokens
    logits = model.get_output_embeddings()(h).float()  # (B, T, V) fp32
    if temperature != 1.0:
        logits = logits / temperature
    targets = input_ids[:, prompt_length:]  # (B, T)
    lse = torch.logsumexp(logits, dim=-1)  # (B, T)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse  # (B, T)
    if not return_entropy:
        return logp
    with torch.no_grad():
        z = logits.detach()
        entropy = lse.detach() - (torch.softmax(z, dim=-1) * z).sum(dim=-1)  # (B, T)
    return logp, entropy
