"""A Bradley–Terry reward model on frozen SmolLM2 features: stage 2 of RLHF.

People (here: the gold scorer) compare two answers y_c ("chosen") and y_r ("rejected") to the
same prompt x. The Bradley–Terry model says the chosen one wins with probability

    P(y_c ≻ y_r | x) = σ(r(x, y_c) − r(x, y_r)),          σ(z) = 1 / (1 + e^{−z})

so the reward r is learned by maximum likelihood on the pairs:

    L = −E[ log σ(r(x, y_c) − r(x, y_r)) ]                 (bradley_terry_loss)

Only differences of r matter: adding a constant to every reward changes nothing.

Here r(x, y) = w · standardise(φ(x, y)) + b, where φ is a feature vector read from the frozen
language model: its hidden states after a middle layer, averaged over the answer's tokens, with
the prompt in front ("prompt\nanswer"). Only the head (w, b and the standardisation
statistics, ~600 numbers) is trained, so the backbone can be the very same frozen reference
model the RL trainer keeps for the KL penalty: no second copy in memory. The head, its loss and its
fit are in llm.reward_head; this module reads φ from the backbone and ties the two together.
Any causal LM can be the backbone (llm.architecture finds its blocks); a head fits only the
backbone it was trained on (`check_head_fits`; scripts/train_reward_model.py --model makes one).

Taught in notebooks/05_reward_model.ipynb; used as the reward in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from reinforce_edu.core._checks import check_choice, check_positive_int
from reinforce_edu.llm.architecture import describe, hidden_size, transformer_blocks
from reinforce_edu.llm.reward_head import RewardHead, bradley_terry_loss, train_head  # noqa: F401 (re-exported)
from reinforce_edu.llm.rewards import _check_texts

HEAD_FILE = Path(__file__).resolve().parents[2] / "data" / "reward_head.safetensors"
"""The trained head shipped with the course (made by scripts/train_reward_model.py)."""

DEFAULT_LAYER = None
DEFAULT_POOLING = "mean"
POOLINGS = ("mean", "last")


class _StopForward(Exception):
    """Raised by a forward hook to end the backbone's forward pass early, carrying the hidden states."""

    def __init__(self, hidden: Tensor):
        super().__init__()
        self.hidden = hidden


class RewardModel(nn.Module):
    """Frozen language model (the backbone) + a trained `RewardHead`.

    backbone: a transformers causal LM; it is put in eval mode and frozen (pass the frozen
    reference policy to share it, never the policy being trained). tokenizer: its tokenizer.
    layer: read the hidden states after this many decoder layers, 1..n_layers (n_layers = the
    final output, after the last norm); default None = the middle, n_layers // 2 + 1 (16 of
    SmolLM2's 30), which separates sentiment better than the last layer. pooling: "mean" over
    the answer's tokens, or the "last" token. batch_size: answers per forward pass.
    Taught in notebooks/05_reward_model.ipynb.
    """

    def __init__(self, backbone: nn.Module, tokenizer, head: RewardHead | None = None, *,
                 layer: int | None = DEFAULT_LAYER, pooling: str = DEFAULT_POOLING, batch_size: int = 32):
        super().__init__()
        check_choice(pooling, "pooling", POOLINGS)
        check_positive_int(batch_size, "batch_size")
        n_layers = backbone.config.num_hidden_layers
        layer = n_layers // 2 + 1 if layer is None else layer
        if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= n_layers:
            raise ValueError(f"layer must be an int in 1..{n_layers} (or None for the middle), got {layer!r}")
        self.backbone = backbone.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.head = head if head is not None else RewardHead(hidden_size(backbone))
        self.layer, self.pooling, self.batch_size = layer, pooling, batch_size

    def train(self, mode: bool = True) -> "RewardModel":
        """Only the head changes mode: the backbone stays in eval mode."""
        self.head.train(mode)
        self.training = mode
        return self

    def _encode(self, prompt: str, completion: str) -> tuple[list[int], int]:
        """Token ids of "prompt\ncompletion" and the number of completion tokens.

        A plain format, not the chat template: the template's system prompt would triple the
        tokens to run, and the features need the answer in context, not the chat markup.
        """
        prefix = self.tokenizer(prompt + "\n", add_special_tokens=False)["input_ids"]
        answer = self.tokenizer(completion, add_special_tokens=False)["input_ids"]
        return prefix + answer, len(answer)

    def _hidden(self, ids: Tensor, attn: Tensor, position_ids: Tensor) -> Tensor:
        """Hidden states after layer `self.layer`: (B, T, H). The forward pass stops there:
        the layers above would be wasted work (about half the model for the middle layer)."""
        base = self.backbone.base_model
        if self.layer == base.config.num_hidden_layers:
            return base(input_ids=ids, attention_mask=attn, position_ids=position_ids).last_hidden_state

        def stop(module, args, output):
            raise _StopForward(output[0] if isinstance(output, tuple) else output)

        handle = transformer_blocks(self.backbone)[self.layer - 1].register_forward_hook(stop)  # any layout
        try:
            base(input_ids=ids, attention_mask=attn, position_ids=position_ids, use_cache=False)
        except _StopForward as done:
            return done.hidden
        finally:
            handle.remove()
        raise RuntimeError(f"layer {self.layer} of the backbone was never reached")

    @torch.no_grad()
    def features(self, prompts: list[str], completions: list[str]) -> Tensor:
        """φ(x, y): (B, H) fp32 features of B (prompt, completion) pairs; no gradient.

        Rows are sorted by length and batched `batch_size` at a time (less padding), left-padded,
        with position ids counted from each row's first real token, then put back in order.
        """
        prompts, completions = _check_texts(prompts, "prompts"), _check_texts(completions, "completions")
        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions must have the same length, "
                             f"got {len(prompts)} and {len(completions)}")
        if not completions:
            raise ValueError("completions is empty; need at least one (prompt, completion) pair")
        encoded = [self._encode(p, c) for p, c in zip(prompts, completions)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        device = next(self.backbone.parameters()).device
        out = None  # (B, H); allocated at the first batch (a subclass's _hidden may return more columns)
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            T = max(len(encoded[i][0]) for i in rows)
            ids = torch.full((len(rows), T), pad, dtype=torch.long)  # (B, T) left-padded
            attn = torch.zeros(len(rows), T, dtype=torch.long)       # (B, T) 1 on real tokens
            pool = torch.zeros(len(rows), T)                         # (B, T) 1 on pooled tokens
            for r, i in enumerate(rows):
                seq, n_answer = encoded[i]
                ids[r, T - len(seq):] = torch.tensor(seq)
                attn[r, T - len(seq):] = 1
                if self.pooling == "mean" and n_answer > 0:
                    pool[r, T - n_answer:] = 1
                else:  # "last", or an empty answer: the final token
                    pool[r, -1] = 1
            position_ids = (attn.cumsum(-1) - 1).clamp_min(0)  # (B, T) as generate() counts them
            hidden = self._hidden(ids.to(device), attn.to(device), position_ids.to(device))
            hidden = hidden.float().cpu()  # (B, T, H)
            if out is None:
                out = torch.empty(len(encoded), hidden.shape[-1])
            out[rows] = (hidden * pool[..., None]).sum(1) / pool.sum(1, keepdim=True)  # (B, H)
        return out

    def forward(self, features: Tensor) -> Tensor:
        """Rewards (B,) from precomputed features (B, H)."""
        return self.head(features)

    @torch.no_grad()
    def score(self, prompts: list[str], completions: list[str]) -> Tensor:
        """r(x, y) for B (prompt, completion) pairs: (B,) fp32, no gradient."""
        return self.head(self.features(prompts, completions))

    def as_reward_fn(self) -> Callable[..., list[float]]:
        """This model as a TRL-style reward function: f(completions, prompts=..., **kw) -> list[float]."""
        def reward_model(completions: list[str], prompts: list[str] | None = None, **kwargs) -> list[float]:
            if prompts is None:
                raise ValueError("the reward model needs prompts=[...]: it scores (prompt, completion) pairs")
            return self.score(prompts, completions).tolist()
        return reward_model

    def save_head(self, path: str | Path) -> None:
        """Write the head (a few KB) and the feature settings to a safetensors file."""
        meta = {"layer": str(self.layer), "pooling": self.pooling, "hidden_size": str(hidden_size(self.backbone)),
                "backbone": describe(self.backbone)}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(tmp), metadata=meta)
        os.replace(tmp, path)  # atomic: an interrupted save never leaves a half-written head


def read_head(path: str | Path) -> tuple[RewardHead, dict[str, str]]:
    """Load a head written by `RewardModel.save_head`: (head, its metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reward head {path} not found; train it with `python scripts/train_reward_model.py`")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    state = load_file(str(path))
    head = RewardHead(state["linear.weight"].shape[1])
    head.load_state_dict(state)
    return head, meta


def load_reward_model(backbone: nn.Module | None = None, tokenizer=None, *,
                      path: str | Path = HEAD_FILE, batch_size: int = 32) -> RewardModel:
    """The course's reward model: SmolLM2 backbone + the head shipped in data/.

    backbone, tokenizer: pass the frozen reference model and its tokenizer to share them;
    by default SmolLM2-135M-Instruct is loaded (fp32). If the head file is absent it is
    trained on data/preferences.jsonl and written to `path` (a few minutes on 2 cores).
    """
    if (backbone is None) != (tokenizer is None):
        raise ValueError("pass both backbone and tokenizer, or neither")
    if backbone is None:
        from reinforce_edu.llm.models import load_model
        backbone, tokenizer = load_model()
    path = Path(path)
    if not path.is_file():
        return fit_reward_model(backbone, tokenizer, save_to=path, batch_size=batch_size)[0]
    head, meta = read_head(path)
    check_head_fits(head, meta, backbone, path)
    layer = meta.get("layer", "")
    return RewardModel(backbone, tokenizer, head, layer=int(layer) if layer else None,
                       pooling=meta.get("pooling", DEFAULT_POOLING), batch_size=batch_size)


def check_head_fits(head: RewardHead, meta: dict[str, str], backbone: nn.Module, path: str | Path) -> None:
    """A ValueError, saying which command makes the right head, if the head was fitted on another backbone.

    The head reads H numbers of one layer of one model: its width must be the backbone's hidden size,
    and the backbone recorded with it (`architecture.describe`: family, depth, vocabulary) this one.
    """
    H, here = head.linear.in_features, describe(backbone)
    recorded = meta.get("backbone", here)
    if H == hidden_size(backbone) and recorded == here:
        return
    model = getattr(backbone.config, "name_or_path", "") or "PATH"  # the folder or hub id it was loaded from
    raise ValueError(f"the reward head {path} was trained on {H}-dim features of layer {meta.get('layer', '?')} "
                     f"of a {recorded} model; this model ({here}) has hidden size {hidden_size(backbone)}: "
                     f"train one with `python scripts/train_reward_model.py --model {model} --out HEAD.safetensors` "
                     f"and train with --reward HEAD.safetensors, or use --reward gold")


def pair_features(model: RewardModel, pairs: list[dict]) -> tuple[Tensor, Tensor]:
    """Features of the chosen and rejected answers of preference pairs: two (N, H) tensors.

    Each distinct (prompt, answer) is run through the backbone once.
    """
    keys = sorted({(p["prompt"], p[side]) for p in pairs for side in ("chosen", "rejected")})
    index = {k: i for i, k in enumerate(keys)}
    feats = model.features([k[0] for k in keys], [k[1] for k in keys])  # (U, H)
    chosen = feats[[index[(p["prompt"], p["chosen"])] for p in pairs]]
    rejected = feats[[index[(p["prompt"], p["rejected"])] for p in pairs]]
    return chosen, rejected


def fit_reward_model(backbone: nn.Module, tokenizer, *, pairs: list[dict] | None = None,
                     layer: int | None = DEFAULT_LAYER, pooling: str = DEFAULT_POOLING, steps: int = 300,
                     lr: float = 0.05, weight_decay: float = 0.3, batch_size: int = 32,
                     save_to: str | Path | None = None) -> tuple[RewardModel, dict[str, list[float]]]:
    """Train a reward model's head on preference pairs (default: data/preferences.jsonl, train split).

    Returns (model, training curves); writes the head to `save_to` if given.
    """
    if pairs is None:
        from reinforce_edu.llm.data import load_preferences
        pairs = load_preferences("train")
    if not pairs:
        raise ValueError("pairs is empty; need at least one preference pair")
    model = RewardModel(backbone, tokenizer, layer=layer, pooling=pooling, batch_size=batch_size)
    chosen, rejected = pair_features(model, pairs)
    curves = train_head(model.head, chosen, rejected, steps=steps, lr=lr, weight_decay=weight_decay)
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        model.save_head(save_to)
    return model, curves
