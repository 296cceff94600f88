"""Train the course's reward-model head and ship it as data/reward_head.safetensors.

    python scripts/train_reward_model.py          # ~3 min on 2 cores
    python scripts/train_reward_model.py --model PATH --out runs/head.safetensors   # a head for any causal LM

A head reads one model's hidden states, so another model (`--model`: a transformers folder or hub id)
needs its own: the trainer then takes `--model PATH --reward runs/head.safetensors`. The layer defaults
to the middle one of that model's depth (n_layers // 2 + 1).

Features come from SmolLM2-135M-Instruct in fp32, exactly as the RL trainer computes them when it
shares its frozen reference model with the reward model; the head is fitted on every train pair
of data/preferences.jsonl with reinforce_edu.llm.reward_model.fit_reward_model (deterministic), and
its held-out pairwise accuracy is printed. Lesson 05 teaches the same steps on a subset.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle threads sleep, not spin (shared CPU)

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reinforce_edu.llm.data import load_preferences  # noqa: E402
from reinforce_edu.llm.models import DEFAULT_MODEL, load_model  # noqa: E402
from reinforce_edu.llm.reward_model import (DEFAULT_LAYER, DEFAULT_POOLING, HEAD_FILE, fit_reward_model,  # noqa: E402
                                        pair_features)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", type=int, default=DEFAULT_LAYER,
                        help="read the hidden states after this many layers (default: the middle one)")
    parser.add_argument("--pooling", default=DEFAULT_POOLING, choices=("mean", "last"))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a busy machine)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"the backbone: {DEFAULT_MODEL!r} or a causal LM's transformers folder / hub id")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where the head goes (default {HEAD_FILE.relative_to(ROOT)}, for {DEFAULT_MODEL} only)")
    parser.add_argument("--steps", type=int, default=300, help="full-batch Adam steps of the head's fit")
    parser.add_argument("--max-pairs", type=int, default=0, help="use the first N train pairs (0: all)")
    args = parser.parse_args(argv)
    if args.out is None and args.model != DEFAULT_MODEL:
        parser.error(f"--out is required with --model {args.model}: {HEAD_FILE.name} is {DEFAULT_MODEL}'s head")
    out = args.out or HEAD_FILE
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    backbone, tokenizer = load_model(args.model)
    train, heldout = load_preferences("train"), load_preferences("heldout")
    if args.max_pairs > 0:
        train, heldout = train[:args.max_pairs], heldout[:args.max_pairs]
    model, curves = fit_reward_model(backbone, tokenizer, pairs=train, layer=args.layer, pooling=args.pooling,
                                     steps=args.steps, save_to=out)
    chosen, rejected = pair_features(model, heldout)
    with torch.no_grad():
        accuracy = (model(chosen) > model(rejected)).float().mean().item()
    print(f"trained on {len(train)} pairs (final loss {curves['train_loss'][-1]:.3f}); "
          f"held-out pairwise accuracy {accuracy:.3f} on {len(heldout)} pairs; "
          f"wrote {out} (layer {model.layer} of {args.model}) in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
