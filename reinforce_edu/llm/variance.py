r"""The variance of the policy gradient on a real LLM, per baseline, from per-sample gradients.

For B = P·k completions (k per prompt) and a parameter subset θ (here: the last transformer
block and the final norm), take each completion's score gradient

    s_ij = ∇_θ log π_θ(y_ij | x_i) = ∇_θ Σ_t m_ijt log π_θ(y_ijt | x_i, y_ij,<t)      (B, D)

With advantages A_ij = R_ij − b_ij, prompt i contributes G_i = (1/k) Σ_j A_ij s_ij to the
batch estimate ĝ = (1/P) Σ_i G_i. Prompts are drawn independently, so

    Var(ĝ) = tr Cov(G_i) / P,

and tr Cov(G_i) is estimated from the P rows G_1..G_P (`variance.estimator_stats`). The same
samples and the same s_ij serve every baseline (common random numbers): the differences come
from the baseline alone.

Per-sample gradients: the frozen trunk runs once, batched; the inputs of the first selected
block are captured with a forward pre-hook, and `per_sample.per_sample_grads` (torch.func vmap
over grad) differentiates only the tail (selected blocks → norm → output layer) per sample.
Attention runs in transformers' "eager" (matmul + softmax) form meanwhile: vmap lacks a
batching rule for the backward of the fused CPU attention kernel.

Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor, nn

from reinforce_edu.core._checks import check_positive_int, check_tensor
from reinforce_edu.core.baselines import Baseline, advantages
from reinforce_edu.llm.logprobs import completion_logprobs
from reinforce_edu.llm.sampling import Rollout
from reinforce_edu.core.per_sample import per_sample_grads
from reinforce_edu.llm.freeze import transformer_blocks
from reinforce_edu.perf.speed import attention_kernel
from reinforce_edu.core.variance import estimator_stats


class _Tail(nn.Module):
    """The last n blocks, the final norm and the output layer of a Llama-like causal LM."""

    def __init__(self, model: nn.Module, n_blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(list(transformer_blocks(model))[-n_blocks:])
        self.norm = model.base_model.norm
        self.head = model.get_output_embeddings()

    def forward(self, h: Tensor, mask: Tensor, cos: Tensor, sin: Tensor, pos: Tensor) -> Tensor:
        for block in self.blocks:  # h: (B, L, H)
            h = block(h, attention_mask=mask, position_embeddings=(cos, sin), position_ids=pos)
        return self.head(self.norm(h))  # (B, L, V)


def _tail_inputs(model: nn.Module, rollout: Rollout, n_blocks: int) -> tuple[Tensor, ...]:
    """Run the model once (no grad) and capture what the first tail block receives."""
    block = transformer_blocks(model)[-n_blocks]
    seen: dict = {}

    def grab(module, args, kwargs):
        seen["h"] = (args[0] if args else kwargs["hidden_states"]).detach()
        seen.update(mask=kwargs["attention_mask"], pe=kwargs["position_embeddings"], pos=kwargs["position_ids"])

    handle = block.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            completion_logprobs(model, rollout.input_ids, rollout.attention_mask, rollout.prompt_length)
    finally:
        handle.remove()
    B = rollout.input_ids.shape[0]
    mask = seen["mask"]
    if mask is None:  # no padding anywhere: a plain causal mask
        L = rollout.input_ids.shape[1]
        mask = torch.ones(L, L, dtype=torch.bool, device=seen["h"].device).tril()[None, None]
    cos, sin = seen["pe"]
    pos = seen["pos"]
    return (seen["h"], mask.expand(B, *mask.shape[1:]), cos.expand(B, *cos.shape[1:]),
            sin.expand(B, *sin.shape[1:]), pos.expand(B, *pos.shape[1:]))


def score_gradients(model: nn.Module, rollout: Rollout, *, n_blocks: int = 1, chunk_size: int | None = 8) -> Tensor:
    """Per-completion score gradients s_i = ∇_θ log π_θ(y_i|x_i), θ = the last `n_blocks` blocks + final norm.

    Returns (B, D) fp32, one row per completion of the rollout. Run the model in fp32 for
    this measurement. `chunk_size` bounds the memory of the vectorised pass.
    """
    check_positive_int(n_blocks, "n_blocks")
    with attention_kernel(model, "eager"):  # plain matmul attention: vmap has batching rules for all of it
        return _score_gradients(model, rollout, n_blocks, chunk_size)


def _score_gradients(model: nn.Module, rollout: Rollout, n_blocks: int, chunk_size: int | None) -> Tensor:
    h, mask, cos, sin, pos = _tail_inputs(model, rollout, n_blocks)
    tail = _Tail(model, n_blocks)
    names = [n for n, _ in tail.named_parameters() if not n.startswith("head.")]
    P0 = rollout.prompt_length

    def sample_loss(out_fn, h_i, mask_i, cos_i, sin_i, pos_i, tokens_i, m_i):
        logits = out_fn(h_i[None], mask_i[None], cos_i[None], sin_i[None], pos_i[None])[0, P0 - 1:-1].float()  # (T, V)
        logp = logits.gather(-1, tokens_i[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # (T,)
        return (logp * m_i).sum()  # log π(y_i|x_i)

    g = per_sample_grads(tail, sample_loss, h, mask, cos, sin, pos, rollout.completion_ids,
                         rollout.completion_mask.to(h.dtype), params=names, chunk_size=chunk_size)  # (B, D)
    return g.detach().float()


def gradient_variance(scores: Tensor, returns: Tensor, baselines: Mapping[str, Baseline]) -> list[dict]:
    """Variance of the batch gradient estimate under each baseline, on the same samples.

    scores: (B, D) per-sample score gradients, B = P·k prompt-major; returns: (P, k).
    Each baseline is called (not updated) on `returns`. Returns one dict per baseline:
    `variance` = tr Cov(G_i) (one prompt's k-sample contribution) and its standard error `variance_se`
    (the estimate is (P/(P−1))·mean_i ‖G_i − Ḡ‖², so SE ≈ (P/(P−1))·std_i ‖G_i − Ḡ‖² / √P), `batch_variance` =
    variance / P (the estimate ĝ of a P-prompt batch), `grad_norm2` = ‖ĝ‖² of this batch,
    and `ratio` = variance relative to the first baseline.
    """
    check_tensor(scores, "scores", ndim=2, floating=True, finite=True)
    check_tensor(returns, "returns", ndim=2, floating=True, finite=True)
    P, k = returns.shape
    if scores.shape[0] != P * k:
        raise ValueError(f"scores must have P·k = {P * k} rows to match returns {tuple(returns.shape)}, "
                         f"got {scores.shape[0]}")
    if P < 2:
        raise ValueError(f"need at least 2 prompts to measure a variance across prompts, got P={P}")
    s = scores.view(P, k, -1)  # (P, k, D)
    rows = []
    for name, baseline in baselines.items():
        adv = advantages(returns, baseline).to(s.dtype)  # (P, k): A_ij = R_ij − b_ij
        G = torch.einsum("pk,pkd->pd", adv, s).double() / k  # (P, D): G_i = (1/k) Σ_j A_ij s_ij
        stats = estimator_stats(G)
        d = (G - G.mean(0)).pow(2).sum(1)  # (P,) ‖G_i − Ḡ‖²; variance = Σ_i d_i / (P − 1)
        se = float(d.std() / math.sqrt(P)) * P / (P - 1)  # delta method: the SE of a mean of P terms
        rows.append({"baseline": name, "variance": stats["variance"], "variance_se": se,
                     "batch_variance": stats["variance"] / P, "grad_norm2": float(G.mean(0).pow(2).sum())})
    for r in rows:
        r["ratio"] = r["variance"] / rows[0]["variance"]
    return rows
