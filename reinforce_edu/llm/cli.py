"""Command line for REINFORCE / RLOO fine-tuning: `python -m reinforce_edu.train`.

    python -m reinforce_edu.train --steps 50 --baseline rloo --beta 0.05
    python -m reinforce_edu.train --config my_run.json --learning-rate 3e-5    # flags override the file
    python -m reinforce_edu.train --output-dir runs/a --resume                 # continue an interrupted run

Every field of `reinforce_edu.llm.trainer.TrainConfig` is a flag (underscores become dashes);
`--help` prints each with its docstring. A config file is a JSON object of field values.
Notebooks call the same entry point: `from reinforce_edu.llm.cli import main; trainer = main([...])`.

Outputs in --output-dir: config.json, metrics.jsonl (one record per step: proxy_reward,
gold_reward, kl, entropy, length, grad_norm, clipped, skipped, step_time, ...),
checkpoint.json and the checkpoint folder it names (reinforce_edu.llm.checkpoint); with --lora-rank R,
adapter/ (the trained adapters: `peft.PeftModel.from_pretrained(base_model, "<output-dir>/adapter")`).

Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path

# Before torch loads OpenMP: idle threads sleep instead of spinning. On a CPU shared with other work,
# spinning threads make each step up to 10x slower; on an idle machine the cost is negligible.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from reinforce_edu.llm.trainer import TrainConfig, Trainer, config_from_dict  # noqa: E402


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each dataclass field (as CleanRL documents its settings)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = nxt.value.value.strip()
    return docs


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field, typed by its default, helped by its docstring."""
    parser = argparse.ArgumentParser(prog="python -m reinforce_edu.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="JSON file of config values (flags override it)")
    docs = field_docs(TrainConfig)
    for f in fields(TrainConfig):
        default = f.default if f.default is not MISSING else None
        kind = _bool if isinstance(default, bool) else type(default)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):  # --resume, or --resume false
            parser.add_argument(flag, dest=f.name, type=kind, nargs="?", const=True, default=None,
                                help=f"{docs.get(f.name, '')} (default: {default})")
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=None,
                                help=f"{docs.get(f.name, '')} (default: {default})")
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Defaults < config file < flags."""
    args = build_parser().parse_args(argv)
    values: dict = {}
    if args.config is not None:
        if not args.config.is_file():
            raise FileNotFoundError(f"config file {args.config} not found")
        values = json.loads(args.config.read_text(encoding="utf-8"))
        if not isinstance(values, dict):
            raise ValueError(f"config file {args.config} must hold a JSON object of field values")
    values.update({k: v for k, v in vars(args).items() if k != "config" and v is not None})
    return config_from_dict(values)


def main(argv: list[str] | None = None) -> Trainer:
    """Parse flags, train, print a one-line summary; returns the Trainer (policy, history, evaluate)."""
    config = parse_config(argv)
    trainer = Trainer(config)
    start = trainer.step
    history = trainer.train()
    if config.lora_rank > 0:
        from reinforce_edu.llm.lora import save_adapter
        save_adapter(trainer, Path(config.output_dir) / "adapter")
    done = [r for r in history if r["step"] > start]
    if done and trainer.dist.is_main:  # several processes: one summary
        last = done[-1]
        print(f"steps {start}->{trainer.step}  proxy {last['proxy_reward']:.3f}  gold {last['gold_reward']:.3f}  "
              f"skipped {trainer.n_skipped}  log {Path(config.output_dir) / 'metrics.jsonl'}", file=sys.stderr)
    return trainer


if __name__ == "__main__":
    main()
