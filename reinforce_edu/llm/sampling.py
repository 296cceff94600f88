r"""Sampling completions from a causal LM: the LLM's rollout y ∼ π_θ(·|x).

REINFORCE needs two things from the policy: samples y ∼ π_θ(·|x), and the log-probability
of exactly those samples under exactly the distribution they were drawn from,

    log π_θ(y|x) = Σ_t log π_θ(y_t | x, y_<t),
    log π_θ(y_t | ·) = z_t[y_t] − logsumexp_v z_t[v]        (z_t: the logits at step t, (V,))

`sample` draws B = P·k completions (k per prompt, prompt-major) with temperature 1 and no
top-k / top-p truncation. That is deliberate: the gradient estimator
E[(R − b) ∇log π_θ(y)] is unbiased only if y really comes from π_θ. Top-k or top-p sampling
draws from a *different*, truncated distribution, and a temperature τ ≠ 1 draws from
softmax(z/τ); the log-probs would then have to be computed from the same truncated or
rescaled distribution. (transformers' `generate` applies top_k=50 unless told otherwise; `sample` applies none.)

Each token is drawn by inverting the CDF of softmax(z/τ): one uniform number per row, u·Σp, and
the first token whose cumulative probability exceeds it — exact, and on a CPU much cheaper than
`torch.multinomial`, which draws one exponential number per vocabulary entry (V = 49 152).

Layout: left padding: completion token t of every row sits at column L − T + t (logits from L − T + t − 1).

Shared prompts. The k samples of a prompt share it: rows i·k … i·k + k − 1 hold the same prompt
tokens. `sample` runs the prompt through the model once per prompt (P rows, not P·k) and copies
the key/value cache k times before sampling; `completion_logprobs(..., group_size=k)` does the
same in the scoring pass, with gradient: the prompt's keys and values are computed once and
repeated, so the gradient reaching them is the sum over the k rows — exactly the gradient of the
full pass, for about (prompt + completion) / (prompt / k + completion) less work.

Scoring the samples: `reinforce_edu.llm.logprobs`. Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from reinforce_edu.core._checks import check_positive_int
from reinforce_edu.core.credit import completion_mask
from reinforce_edu.perf.precision import check_autocast


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


def _cache_keyword(fn) -> str:
    """The name under which this transformers version passes a KV cache ("cache" since 5.x, else "past_key_values")."""
    return "cache" if "cache" in inspect.signature(fn).parameters else "past_key_values"


def _output_cache(out):
    """The KV cache of a model output (attribute "cache" or, in older transformers, "past_key_values")."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _prefill_once(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor, k: int):
    """Run the P distinct prompts of a prompt-major (P·k, L) batch once, then repeat the cache k times.

    All but the last prompt column are cached: the sampling loop feeds the last one.
    Returns the cache for the B = P·k rows (None for one-token prompts: nothing to cache).
    """
    ids, mask = input_ids[::k, :-1], attention_mask[::k, :-1]  # (P, L − 1)
    if ids.shape[1] == 0:
        return None
    out = model.base_model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=True)
    cache = _output_cache(out)
    if k > 1:
        cache.batch_repeat_interleave(k)  # (P, ...) -> (P·k, ...), prompt-major like the rows
    return cache


def filter_logits(z: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Top-k and top-p (nucleus) truncation: logits outside are set to −inf. (B, V) -> (B, V).

    None (the default) leaves the distribution whole, as the estimator needs.
    """
    if top_k is not None and 0 < top_k < z.shape[-1]:
        kth = z.topk(int(top_k), dim=-1).values[:, -1:]  # (B, 1)
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p is not None and float(top_p) < 1.0:
        sorted_z, order = z.sort(dim=-1, descending=True)  # (B, V)
        cum = torch.softmax(sorted_z, dim=-1).cumsum(dim=-1)
        drop = cum - torch.softmax(sorted_z, dim=-1) >= float(top_p)  # mass before this token already >= p
        z = z.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return z


def sample_categorical(z: Tensor, rows: tuple[int, int] | None = None) -> Tensor:
    """One draw per row from softmax(z), by inverting its CDF: (B, V) logits -> (B,) token ids.

    u ∼ U[0, 1) per row; the token is the first v with Σ_{w≤v} p_w > u·Σ_w p_w (fp64 cumulative sum).
    Tokens with probability 0 are never drawn. rows = (first, total): these B rows are rows
    first … first + B − 1 of a batch of `total`; all `total` numbers are drawn and the B of these
    rows kept, so each row draws what it would draw in the whole batch (one process of several).
    """
    first, total = rows if rows is not None else (0, z.shape[0])
    cdf = torch.softmax(z.float(), dim=-1).double().cumsum(dim=-1)  # (B, V)
    u = torch.rand(total, 1, dtype=torch.float64, device=z.device)[first:first + z.shape[0]]  # (B, 1)
    u = u * cdf[:, -1:]  # (B, 1)
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max(z.shape[-1] - 1)  # (B,)


@torch.no_grad()
def _decode(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor, k: int, max_new_tokens: int,
            eos: list[int], pad: int, temperature: float, top_k: int | None, top_p: float | None,
            rows: tuple[int, int] | None = None, all_done: Callable[[Tensor], bool] | None = None) -> Tensor:
    """The sampling loop: left-padded prompts (B, L0) -> new tokens (B, T), pad after each row's EOS.

    The prompts (all but their last column) are run once per distinct prompt (`_prefill_once`); then
    one token per step for every row, reusing the key/value cache. Stops when every row has ended.
    """
    B = input_ids.shape[0]
    cache = _prefill_once(model, input_ids, attention_mask, k)
    cache_kw = _cache_keyword(model.forward)
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    step_ids = input_ids[:, -1:]  # (B, 1): the last prompt token predicts the first new one
    mask = attention_mask
    pos = position_ids(attention_mask)[:, -1:]  # (B, 1)
    eos_t = torch.tensor(eos, device=input_ids.device)
    done = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    new = []
    for _ in range(max_new_tokens):
        out = model(input_ids=step_ids, attention_mask=mask, position_ids=pos, use_cache=True,
                    **({cache_kw: cache} if cache is not None else {}), **keep)
        cache = _output_cache(out)
        z = out.logits[:, -1].float() / temperature  # (B, V)
        tok = sample_categorical(filter_logits(z, top_k, top_p), rows)  # (B,)
        tok = torch.where(done, torch.full_like(tok, pad), tok)  # rows already ended: padding
        new.append(tok)
        done = done | torch.isin(tok, eos_t)
        if bool(done.all()) if all_done is None else all_done(done):  # all_done: of every process (sharded)
            break
        step_ids = tok[:, None]
        mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
        pos = pos + 1
    return torch.stack(new, dim=1)  # (B, T)


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
           seed: int | None = None, chat: bool = True, share_prompts: bool = True,
           rows: tuple[int, int] | None = None, all_done: Callable[[Tensor], bool] | None = None) -> Rollout:
    """Sample k completions of each prompt with a KV-cached loop. Returns a `Rollout` (B = P·k rows).

    temperature 1 and no top-k / top-p (the defaults) sample from π_θ itself, so
    `completion_logprobs` gives the exact log-probs of the sampling distribution. With
    `seed`, sampling uses a private RNG stream (the global torch RNG is left untouched);
    without, it draws from the global torch RNG. Run it under `torch.autocast` for bf16 speed.
    Generation stops at EOS (the row is then padded with the pad token) or after
    `max_new_tokens`; completion_mask marks the tokens up to and including the first EOS.
    With `share_prompts` (default) each distinct prompt is run through the model once and its
    key/value cache repeated k times (see the module docstring); the samples have the same distribution.
    rows = (first, total): these P·k rows are rows first … of a batch of `total` sampled with the same
    seed (one process's share, reinforce_edu.llm.distributed); each row draws the uniform numbers it
    draws in the whole batch, so N processes sample what one process would. all_done(done) -> bool ends the
    loop (default: every row here has ended); a sharded model needs every process's rows ended.
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
    check_autocast(model)
    device = next(model.parameters()).device
    input_ids, attention_mask = encode_prompts(tokenizer, prompts, k, chat=chat, max_length=room)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    if rows is not None and not (0 <= rows[0] and rows[0] + input_ids.shape[0] <= rows[1]):
        raise ValueError(f"rows=(first, total)={tuple(rows)} must hold the {input_ids.shape[0]} rows sampled here")
    eos = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        new = _decode(model, input_ids, attention_mask, k if share_prompts else 1, max_new_tokens, eos, pad,
                      float(temperature), top_k, top_p, rows, all_done)  # (B, T)
    out = torch.cat([input_ids, new], dim=1)  # (B, L)
    L0 = input_ids.shape[1]
    new = out[:, L0:]  # (B, T)
    if new.shape[1] == 0:
        raise RuntimeError("sampling returned no new tokens")
    # one EOS id stands for all of them, so the library's first-EOS mask applies
    tokens = torch.where(torch.isin(new, torch.tensor(eos, device=new.device)), eos[0], new)
    cmask = completion_mask(tokens, eos[0]).to(device)  # (B, T)
    full_mask = torch.cat([attention_mask, torch.ones_like(new)], dim=1)  # (B, L)
    texts = tokenizer.batch_decode([row[m.bool()] for row, m in zip(new, cmask)], skip_special_tokens=True)
    return Rollout(prompts=prompts, input_ids=out, attention_mask=full_mask, completion_mask=cmask,
                   prompt_length=L0, completions=texts, k=k)


def position_ids(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding: p_j = (Σ_{i≤j} m_i) − 1, 0 on padding. (B, L) -> (B, L).

    The same positions the sampling loop uses, so the scoring pass sees what sampling saw.
    """
    pos = attention_mask.long().cumsum(dim=1) - 1
    return pos.masked_fill(attention_mask == 0, 0)
