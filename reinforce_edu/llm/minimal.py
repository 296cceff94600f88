r"""REINFORCE with a leave-one-out baseline (RLOO) for a Hugging Face causal LM, in one file.

Each step takes P prompts x_i, samples k completions y_ij of each (B = P·k rows, prompt-major) from
the full softmax at temperature τ (no top-k / top-p), scores them with a reward r_ij, and minimises

    R_ij = r_ij − β · Σ_t m_ijt (log π_θ(y_ijt) − log π_ref(y_ijt))   k1 KL folded into the reward, detached
    b_ij = (Σ_l R_il − R_ij) / (k − 1)                                 leave-one-out: mean of the *other* samples
    A_ij = R_ij − b_ij
    L(θ) = −(1/B) Σ_ij A_ij Σ_t m_ijt log π_θ(y_ijt)                   A detached; summed over tokens, mean over rows

m_ijt is 1 on completion tokens through the first EOS; log π_θ(y_t) is the log-softmax of logits / τ, the
distribution the token was drawn from, so ∇L is an unbiased estimate of −∇(E[r] − β·KL(π_θ ‖ π_ref)), π_ref
a frozen copy of the starting model. The gradient is clipped to max_grad_norm, then AdamW steps; a non-finite
loss or gradient skips the step. Needs only torch and transformers (vaderSentiment for the default reward).

    python -m reinforce_edu.llm.minimal --model HuggingFaceTB/SmolLM2-135M-Instruct --steps 50
    python -m reinforce_edu.llm.minimal --prompts prompts.txt --reward my_module:my_reward
"""

from __future__ import annotations

import argparse, ast, copy, dataclasses, importlib, inspect, itertools, json, math, random  # noqa: E401
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

RewardFn = Callable[..., list[float]]  # TRL's signature: f(completions: list[str], prompts: list[str], **kw)
PROMPTS = ["Tell me about your day.", "Describe the sea.", "What do you think of Mondays?", "Write about rain."]


@dataclasses.dataclass
class Settings:
    """One run; `python -m reinforce_edu.llm.minimal --help` lists the fields with these docs."""

    model: str = "smollm2"
    """a transformers folder or hub id; "smollm2" = the course's offline SmolLM2-135M-Instruct"""
    prompts: str = ""
    """a .txt (one prompt a line) or .jsonl ({"prompt": ...} a line) file; "" = four built-in prompts"""
    reward: str = "vader"
    """"vader" (VADER's compound sentiment, in [-1, 1]) or "module:function" with TRL's signature"""
    learning_rate: float = 1e-5
    """AdamW learning rate (no weight decay)"""
    prompts_per_step: int = 4
    """P: prompts per step"""
    samples_per_prompt: int = 4
    """k: completions per prompt (B = P·k rows); the leave-one-out baseline needs k >= 2"""
    max_new_tokens: int = 32
    """longest completion, in tokens"""
    temperature: float = 1.0
    """sampling temperature τ; the log-probs use the same τ"""
    beta: float = 0.05
    """β, the weight of the KL penalty to the frozen starting model"""
    max_grad_norm: float = 1.0
    """clip the gradient to this L2 norm; 0 = no clipping"""
    steps: int = 20
    """number of updates"""
    seed: int = 0
    """seed of the prompt order and of sampling"""
    output: str = ""
    """folder for metrics.jsonl and the fine-tuned model; "" = save nothing"""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # f.type is the annotation's text, e.g. "float"
            value, positive = getattr(self, f.name), f.name not in ("beta", "max_grad_norm")  # those two may be 0
            if isinstance(value, bool) or not isinstance(value, (int, float) if f.type == "float" else type(f.default)):
                raise TypeError(f"Settings.{f.name} must be of type {f.type}, got {value!r}")
            if f.type != "str" and f.name != "seed" and not (
                    math.isfinite(value) and (value > 0 or value == 0 and not positive)):
                raise ValueError(f"Settings.{f.name} must be a finite number {'>' if positive else '>='} 0, got {value!r}")
        if self.samples_per_prompt < 2:
            raise ValueError(f"Settings.samples_per_prompt must be >= 2 (leave-one-out averages the other samples "
                             f"of each prompt), got {self.samples_per_prompt}")


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], k: int, max_new_tokens: int, temperature: float = 1.0,
           seed: int = 0) -> tuple[Tensor, Tensor, int, Tensor]:
    """k completions of each prompt (rows prompt-major) drawn from softmax(logits / temperature). Returns
    input_ids (B, L): left-padded prompt, then completion; attention_mask (B, L); prompt_length L0, the column
    where completions start; completion_mask (B, T = L − L0): 1 through the first EOS, 0 after."""
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be a non-empty list of str, got {prompts!r}")
    chat = getattr(tokenizer, "chat_template", None) is not None  # wrap each prompt as a user turn
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts] if chat else prompts
    device = next(model.parameters()).device
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=not chat)
    ids = enc["input_ids"].repeat_interleave(k, dim=0).to(device)  # (B, L0)
    mask = enc["attention_mask"].repeat_interleave(k, dim=0).to(device)  # (B, L0)
    eos = model.generation_config.eos_token_id  # an int, a list of them, or None
    eos = torch.tensor(eos if isinstance(eos, list) else [tokenizer.eos_token_id if eos is None else eos]).to(device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else int(eos[0])
    # a fresh config, not the model's: no top-k, top-p, repetition penalty or other change to softmax(z / τ)
    config = GenerationConfig(do_sample=True, top_k=0, top_p=1.0, temperature=temperature,
                              max_new_tokens=max_new_tokens, eos_token_id=eos.tolist(), pad_token_id=pad)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the same draws for one seed
        torch.manual_seed(seed)
        input_ids = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)  # (B, L)
    y = input_ids[:, ids.shape[1]:]  # (B, T)
    is_eos = torch.isin(y, eos).long()  # (B, T)
    completion_mask = (is_eos.cumsum(dim=1) - is_eos == 0).float()  # (B, T): no EOS strictly before t
    return input_ids, torch.cat([mask, torch.ones_like(y)], dim=1), ids.shape[1], completion_mask


def completion_logprobs(model, input_ids: Tensor, attention_mask: Tensor, prompt_length: int,
                        temperature: float = 1.0) -> Tensor:
    """log π(y_t | x, y_<t) of the completion tokens, in fp32: (B, L) -> (B, T), T = L − prompt_length."""
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape or not 1 <= prompt_length < input_ids.shape[1]:
        raise ValueError(f"need input_ids and attention_mask of one shape (B, L) and 1 <= prompt_length < L; got "
                         f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)} and prompt_length={prompt_length}")
    positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L): skip left padding, as generate
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).logits  # (B, L, V)
    z = logits[:, prompt_length - 1:-1].float() / temperature  # (B, T, V): column t − 1 predicts token t
    y = input_ids[:, prompt_length:]  # (B, T)
    return z.gather(-1, y[..., None]).squeeze(-1) - z.logsumexp(dim=-1)  # (B, T): z[y] − logsumexp(z)


def rloo_loss(logp: Tensor, ref_logp: Tensor, rewards: Tensor, mask: Tensor, k: int,
              beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """The loss L of the module docstring, A and the KL (B,). logp, ref_logp, mask: (B, T); rewards: (B,)."""
    B = logp.shape[0]
    for name, t, shape in (("ref_logp", ref_logp, logp.shape), ("mask", mask, logp.shape), ("rewards", rewards, (B,))):
        if logp.dim() != 2 or t.shape != shape:
            raise ValueError(f"{name} must have shape {tuple(shape)} to match logp (B, T), got {tuple(t.shape)}")
    if type(k) is not int or k < 2 or B % k:
        raise ValueError(f"k must be an int >= 2 (leave-one-out) dividing B={B}, got k={k!r}")
    kl = ((logp.detach() - ref_logp) * mask).sum(dim=1)  # (B,) Σ_t k1_t
    R = (rewards - beta * kl).view(B // k, k)  # (P, k) R_ij
    baseline = (R.sum(dim=1, keepdim=True) - R) / (k - 1)  # (P, k) b_ij, the mean of the other samples
    advantages = (R - baseline).reshape(B)  # (B,) A_ij
    loss = -(advantages.detach()[:, None] * logp * mask).sum() / B  # −(1/B) Σ_ij A_ij Σ_t m_ijt log π_θ(y_ijt)
    return loss, advantages, kl


def update(model, optimizer: torch.optim.Optimizer, loss: Tensor, max_grad_norm: float) -> float | None:
    """Backward, clip, step. Returns ‖g‖ before clipping, or None (nothing changed) if the loss or ‖g‖ is not
    finite."""
    optimizer.zero_grad(set_to_none=True)
    norm = math.nan
    if torch.isfinite(loss):
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm or math.inf))  # g·min(1, c/‖g‖)
    if not math.isfinite(norm):
        print(f"skipping the update: the loss is {loss.item()}, the gradient norm {norm}")
        return None
    optimizer.step()
    return norm


def train_step(model, ref_model, tokenizer, optimizer: torch.optim.Optimizer, reward_fn: RewardFn,
               prompts: list[str], s: Settings, seed: int = 0) -> dict:
    """Sample B = P·k completions, score them, one RLOO update. Returns the step's metrics."""
    k = s.samples_per_prompt
    input_ids, attention_mask, L0, mask = sample(model, tokenizer, prompts, k, s.max_new_tokens, s.temperature, seed)
    completions = tokenizer.batch_decode([y[m > 0] for y, m in zip(input_ids[:, L0:], mask)], skip_special_tokens=True)
    scores = reward_fn(completions=completions, prompts=[p for p in prompts for _ in range(k)])
    rewards = torch.tensor(scores, dtype=torch.float32, device=input_ids.device)  # (B,)
    if rewards.shape != (len(completions),) or not torch.isfinite(rewards).all():
        raise ValueError(f"reward_fn must return {len(completions)} finite numbers, got {scores!r}")
    with torch.no_grad():
        ref_logp = completion_logprobs(ref_model, input_ids, attention_mask, L0, s.temperature)  # (B, T)
    logp = completion_logprobs(model, input_ids, attention_mask, L0, s.temperature)  # (B, T)
    loss, _, kl = rloo_loss(logp, ref_logp, rewards, mask, k, s.beta)
    grad_norm = update(model, optimizer, loss, s.max_grad_norm)
    return {"reward": rewards.mean().item(), "kl": kl.mean().item(), "loss": loss.item(),
            "length": mask.sum(dim=1).mean().item(), "grad_norm": grad_norm, "skipped": grad_norm is None}


def vader_reward(completions: list[str], **kw) -> list[float]:
    """The default reward: VADER's compound sentiment of each completion, in [-1, 1] (pip install vaderSentiment)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    vader = SentimentIntensityAnalyzer()
    return [vader.polarity_scores(c)["compound"] for c in completions]


def load_model(name: str):
    """(model, tokenizer) on CUDA if there is one: "smollm2" or a name from_pretrained takes."""
    if name == "smollm2":  # the course's offline copy: the one import from the package, made only here
        from reinforce_edu.llm.models import load_model as load_course_model
        model, tokenizer = load_course_model("smollm2")
    else:
        model, tokenizer = AutoModelForCausalLM.from_pretrained(name), AutoTokenizer.from_pretrained(name)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), tokenizer


def train(s: Settings, model=None, tokenizer=None, reward_fn: RewardFn | None = None,
          prompts: list[str] | None = None) -> list[dict]:
    """s.steps RLOO updates of `model` (in place); the model, reward and prompts not passed are loaded as `s` says."""
    if (model is None) != (tokenizer is None):
        raise ValueError("pass both model and tokenizer, or neither")
    if model is None:
        model, tokenizer = load_model(s.model)
    if reward_fn is None:  # "vader" or "module:function"
        module, _, name = s.reward.partition(":")
        reward_fn = vader_reward if s.reward == "vader" else getattr(importlib.import_module(module), name)
    if prompts is None:  # PROMPTS, or a .txt file (one prompt a line) or .jsonl ({"prompt": ...} a line)
        lines = Path(s.prompts).read_text(encoding="utf-8").splitlines() if s.prompts else PROMPTS
        prompts = [json.loads(ln)["prompt"] if s.prompts.endswith(".jsonl") else ln for ln in lines if ln.strip()]
    ref_model = copy.deepcopy(model).eval().requires_grad_(False)  # π_ref: the starting model, frozen
    model.eval()  # no dropout: the scoring pass sees the distribution the samples came from
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=0.0)
    order = random.Random(s.seed).sample(range(len(prompts)), len(prompts))  # one shuffle, then cycle through it
    history = []
    for step in range(s.steps):
        batch = [prompts[order[(step * s.prompts_per_step + i) % len(prompts)]] for i in range(s.prompts_per_step)]
        rec = train_step(model, ref_model, tokenizer, optimizer, reward_fn, batch, s, s.seed * 100_003 + step)
        history.append({"step": step + 1, **rec})
        print(json.dumps(history[-1]))
    if s.output:
        Path(s.output).mkdir(parents=True, exist_ok=True)
        Path(s.output, "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")
        model.save_pretrained(s.output)
        tokenizer.save_pretrained(s.output)
    return history


def main(argv: list[str] | None = None) -> list[dict]:
    """The command line: one --option per Settings field, with the field's docstring as its help."""
    body = ast.parse(inspect.getsource(Settings)).body[0].body
    docs = {a.target.id: b.value.value for a, b in itertools.pairwise(body) if isinstance(a, ast.AnnAssign)
            and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant)}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(Settings):
        parser.add_argument(*dict.fromkeys([f"--{f.name}", f"--{f.name.replace('_', '-')}"]), type=type(f.default),
                            default=f.default, help=f"{docs.get(f.name, '')} (default: {f.default!r})")
    return train(Settings(**vars(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
