r"""The log-probability of sampled completions under the policy: log π_θ(y|x), with gradient.

    log π_θ(y|x) = Σ_t log π_θ(y_t | x, y_<t),
    log π_θ(y_t | ·) = z_t[y_t] − logsumexp_v z_t[v]        (z_t: the logits at step t, (V,))

`completion_logprobs` scores the completions in one forward pass. It computes logits only
at completion positions (the hidden states of the prompt never meet the (H, V) output
matrix), and `token_logprobs` takes gather − logsumexp in fp32 (the bf16 logits of autocast are
read as they are, never copied whole to fp32): no (B, T, V) log-softmax copy, one softmax for
log π, its gradient and the entropy.

Layout as in `reinforce_edu.llm.sampling`: left padding, completion token t of every row at column
L − T + t, its logits from column L − T + t − 1. With `group_size=k` the prompt runs once per group
(its key/value cache repeated k times), with gradient: exactly the full pass's gradient, for less work.

Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import PreTrainedModel

from reinforce_edu.core._checks import check_positive_int, check_tensor
from reinforce_edu.llm.sampling import _cache_keyword, _output_cache, position_ids
from reinforce_edu.perf.precision import check_autocast


def completion_hidden_states(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor, prompt_length: int,
                             group_size: int = 1) -> Tensor:
    """The base model's last hidden states at the T positions that predict completion tokens: (B, L) -> (B, T, H).

    group_size = k > 1: rows i·k … i·k + k − 1 must share their prompt columns (as `sample` makes them);
    the prompt runs once per group and its key/value cache is repeated k times (differentiable). A sharded
    model (llm.sharding) runs every row whole: FSDP reduces the gradient after one call of its root.
    """
    check_autocast(model)
    L = input_ids.shape[1]
    base = model.base_model
    pos = position_ids(attention_mask)  # (B, L)
    k = check_positive_int(group_size, "group_size")
    if k == 1 or hasattr(base, "unshard"):  # sharded (llm.sharding): one call of the base, the FSDP root, per pass
        hidden = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
                      use_cache=False).last_hidden_state  # (B, L, H)
        return hidden[:, prompt_length - 1:L - 1]  # (B, T, H)
    B = input_ids.shape[0]
    if B % k:
        raise ValueError(f"group_size={k} must divide the number of rows B={B}")
    prompt = input_ids[:, :prompt_length].reshape(B // k, k, prompt_length)  # (P, k, Lp)
    pmask = attention_mask[:, :prompt_length].reshape(B // k, k, prompt_length)
    if not (torch.equal(prompt, prompt[:, :1].expand_as(prompt)) and torch.equal(pmask, pmask[:, :1].expand_as(pmask))):
        raise ValueError(f"group_size={k}: the rows of each group of {k} must share the same prompt "
                         f"(prompt-major layout, as sampling.sample makes it)")
    # one embedding lookup for both passes: its backward then builds one dense (V, H) gradient, not two
    rest_ids = input_ids[:, prompt_length:L - 1]  # (B, T − 1)
    embeds = base.get_input_embeddings()(torch.cat([prompt[:, 0].reshape(-1), rest_ids.reshape(-1)]))  # (N, H)
    n_prompt = prompt[:, 0].numel()
    first = base(inputs_embeds=embeds[:n_prompt].view(B // k, prompt_length, -1), attention_mask=pmask[:, 0],
                 position_ids=pos[::k, :prompt_length], use_cache=True)  # P rows
    cache = _output_cache(first)
    cache.batch_repeat_interleave(k)  # (P, heads, Lp, d) -> (B, heads, Lp, d) per layer, with gradient
    h_first = first.last_hidden_state[:, -1:].repeat_interleave(k, dim=0)  # (B, 1, H): predicts y_1
    if L - 1 == prompt_length:
        return h_first
    rest = base(inputs_embeds=embeds[n_prompt:].view(B, L - 1 - prompt_length, -1), attention_mask=attention_mask[:, :L - 1],
                position_ids=pos[:, prompt_length:L - 1], use_cache=True,
                **{_cache_keyword(base.forward): cache}).last_hidden_state  # (B, T − 1, H)
    return torch.cat([h_first, rest], dim=1)  # (B, T, H)


def completion_logprobs(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor, prompt_length: int, *,
                        temperature: float = 1.0, return_entropy: bool = False,
                        group_size: int = 1) -> Tensor | tuple[Tensor, Tensor]:
    r"""log π_θ(y_t | x, y_<t) of the completion tokens, in fp32. (B, L) -> (B, T), T = L − prompt_length.

    The base model gives hidden states (B, L, H); only the T completion positions go through
    the output layer, and log π = z[y] − logsumexp(z) on fp32 logits (z = logits / temperature;
    pass the temperature the samples were drawn with). Differentiable; wrap in torch.no_grad()
    for the frozen reference. With `return_entropy`, also returns the exact per-token entropy
    H_t = logsumexp(z) − Σ_v softmax(z)_v z_v, (B, T), detached.
    group_size = k > 1 runs each group's shared prompt once (see `completion_hidden_states`): the same
    values and gradients, less work.
    """
    check_tensor(input_ids, "input_ids", ndim=2, integer=True)
    check_tensor(attention_mask, "attention_mask", ndim=2)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                         f"got {tuple(attention_mask.shape)}")
    L = input_ids.shape[1]
    if isinstance(prompt_length, bool) or not isinstance(prompt_length, int) or not 1 <= prompt_length < L:
        raise ValueError(f"prompt_length must be an int in [1, {L - 1}] (L = {L}), got {prompt_length!r}")
    h = completion_hidden_states(model, input_ids, attention_mask, prompt_length, group_size)  # (B, T, H)
    logits = model.get_output_embeddings()(h)  # (B, T, V), bf16 under autocast: token_logprobs works in fp32
    if temperature != 1.0:
        logits = logits.float() / temperature
    targets = input_ids[:, prompt_length:]  # (B, T)
    return token_logprobs(logits, targets, return_entropy=return_entropy)  # (B, T) [, (B, T)]


class _TokenLogprobs(torch.autograd.Function):
    r"""log p(y) = z[y] − logsumexp(z) (and, if asked, the entropy H = logsumexp(z) − Σ_v p_v z_v), in fp32.

    With m = max z, u = z − m (fp32, even for bf16 z: no separate fp32 copy of z), e = exp(u), s = Σ e:
        logsumexp(z) = m + log s,   p = e / s,   H = log s − Σ_v p_v u_v.
    Backward: ∂ log p(y) / ∂z = onehot(y) − p, so dz = g · (onehot(y) − p), cast to z's dtype.
    p is the one (…, V) tensor kept for the backward. The entropy is not differentiated (it is
    logged, not trained). On a CPU this is about half the (…, V)-sized passes of an upcast,
    logsumexp + gather and a separate softmax for the entropy.
    """

    @staticmethod
    def forward(ctx, z: Tensor, y: Tensor, with_entropy: bool) -> tuple[Tensor, Tensor | None]:  # z (…, V), y (…,)
        acc = torch.promote_types(z.dtype, torch.float32)  # fp32 for bf16 / fp16 / fp32 logits
        m = z.amax(dim=-1, keepdim=True).to(acc)  # (…, 1)
        u = torch.sub(z, m)  # (…, V) in acc (type promotion; z itself is never copied)
        e = u.exp()  # (…, V)
        s = e.sum(dim=-1, keepdim=True)  # (…, 1)
        log_s = s.log().squeeze(-1)  # (…,)
        logp = (z.gather(-1, y.unsqueeze(-1)).to(acc) - m).squeeze(-1) - log_s  # (…,) = z[y] − logsumexp(z)
        entropy = None
        if with_entropy:
            entropy = log_s - u.mul_(e).sum(dim=-1) / s.squeeze(-1)  # (…,) log s − Σ p u
            ctx.mark_non_differentiable(entropy)
        del u
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(e.div_(s), y)  # p = softmax(z)
        ctx.dtype = z.dtype
        return logp, entropy

    @staticmethod
    def backward(ctx, g: Tensor, _g_entropy: Tensor | None) -> tuple[Tensor, None, None]:  # g (…,)
        p, y = ctx.saved_tensors
        dz = p.mul(-g.unsqueeze(-1))  # (…, V): −g·p
        dz.scatter_add_(-1, y.unsqueeze(-1), g.unsqueeze(-1))  # + g at the sampled token
        return dz.to(ctx.dtype), None, None


def token_logprobs(logits: Tensor, targets: Tensor, *, return_entropy: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    r"""log softmax(z)[y] per position, and with `return_entropy` the entropy of softmax(z): (…, V), (…,) -> (…,).

    Differentiable in the log-probs (the entropy comes detached). Computed in fp32 whatever the
    dtype of `logits` (bf16 logits are read once, never copied to fp32 whole); the gradient comes
    back in the dtype of `logits`. Equal to `log_softmax(z.float()).gather(y)` and `−Σ p log p`.
    """
    check_tensor(logits, "logits", floating=True)
    check_tensor(targets, "targets", integer=True)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"targets must have the shape of logits without its last axis "
                         f"{tuple(logits.shape[:-1])}, got {tuple(targets.shape)}")
    logp, entropy = _TokenLogprobs.apply(logits, targets, bool(return_entropy))
    return (logp, entropy) if return_entropy else logp
