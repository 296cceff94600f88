"""Train the course's reward-model head and ship it as data/reward_head.safetensors.

    python scripts/train_reward_model.py          # ~3 min on 2 cores

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
from reinforce_edu.llm.models import load_model  # noqa: E402
from reinforce_edu.llm.reward_model import (DEFAULT_LAYER, DEFAULT_POOLING, HEAD_FILE, fit_reward_model,  # noqa: E402
                                        pair_features)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", type=int, default=DEFAULT_LAYER,
                        help="read the hidden states after this many layers (default: the middle one)")
    parser.add_argument("--pooling", default=DEFAULT_POOLING, choices=("mean", "last"))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a busy machine)")
    parser.add_argument("--out", type=Path, default=HEAD_FILE)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    backbone, tokenizer = load_model()
    train, heldout = load_preferences("train"), load_preferences("heldout")
    model, curves = fit_reward_model(backbone, tokenizer, pairs=train, layer=args.layer, pooling=args.pooling,
                                     save_to=args.out)
    chosen, rejected = pair_features(model, heldout)
    with torch.no_grad():
        accuracy = (model(chosen) > model(rejected)).float().mean().item()
    print(f"trained on {len(train)} pairs (final loss {curves['train_loss'][-1]:.3f}); "
          f"held-out pairwise accuracy {accuracy:.3f} on {len(heldout)} pairs; "
          f"wrote {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
