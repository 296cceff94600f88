"""Our trainer against TRL's RLOOTrainer: the same RLOO step on the same model, timed in one run.

    python benchmarks/vs_trl.py                      # CPU: 2 warm-up + 6 timed steps per side
    python benchmarks/vs_trl.py --steps 6 --repeats 2 --json data/results/vs_trl_cpu.json   # the stored result
    python benchmarks/vs_trl.py --precisions fp32 default --steps 3 --warmup 1 \
        --json data/results/vs_trl_cpu_amd-epyc-zen3.json   # a CPU without native bf16

Both sides: SmolLM2-135M-Instruct (the course's offline copy, every parameter trains, fp32 master
weights, AdamW), the same 64 training prompts (data/prompts_train.jsonl), P = 4 prompts × k = 4
samples = 16 completions of at most 32 new tokens per step, temperature 1, RLOO baseline, β = 0.05
(k1 KL folded into the reward), one optimiser step per batch, the same learning rate and the same
reward function (the gold scorer, VADER: a few ms, so the timings are those of the trainers).

Configurations (--precisions), each in a fresh process (so its peak memory is its own):
  default  each side's default: TRL's RLOOConfig as it comes (bf16=True, i.e. bf16 autocast, whatever
           the CPU, and gradient_checkpointing=True); ours dtype="auto" (reinforce_edu.perf.precision: bf16
           autocast where a matmul probe shows the CPU multiplies bf16 fast, else fp32)
  fp32     matched: TRL bf16=False, ours dtype="fp32"
  bf16     matched: TRL bf16=True, ours dtype="bf16"
Where the CPU multiplies bf16 fast both defaults are bf16 and "default" is also the matched-bf16
comparison; on a CPU without native bf16 (AVX2 only) TRL's default is bf16 and ours is fp32. Target:
ours >= 2x TRL at matched precision; the default-vs-default ratio is reported.

Our trainer keeps freed memory in the process on a CPU (reinforce_edu.perf.allocator: no page faults on
each step's fresh tensors). That is one of its levers, not something TRL does; for a view of the
rest, `--trl-kept-memory` (on by default) also times TRL with the very same allocator setting, and the
ratio against that run is printed beside the target's.

Per step TRL runs: generate, a no-grad pass of the policy (old log-probs, used for the KL), a no-grad
pass of the reference, then the training pass whose activations are recomputed in the backward
(gradient checkpointing). Ours: generate, a no-grad pass of the reference, the training pass (whose
log-probs also give the KL). Reported: median s/step over the timed steps (min-max), the generation
share, samples/s, completion tokens/s, peak RSS; for ours also the train phase's achieved GFLOP/s
(FLOPs counted by torch.utils.flop_counter) against this machine's matmul peak in the precision it
ran (no target: the earlier ">= 40 % of the bf16 peak" was retired), the share of its time spent in
matmul kernels (measure.matmul_share; benchmarks/train_phase_budget.py splits that time further), and,
where it ran in bf16, the mismatch between bf16-autocast and fp32 log-probs of the same completions.

TRL is an optional extra (`pip install -e '.[bench]'`); without it only our side runs. Runs offline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import workload
from workload import BETA, K, LR, NEW_TOKENS, P, ROOT, prompts, trainer

TARGET_MATCHED = 2.0
STEP_BEGIN, STEP_END = "STEP_BEGIN", "STEP_END"
PRECISIONS = ("default", "fp32", "bf16")


# ----------------------------------------------------------------------------- workers (one per process)

def _text_reward(completions, **kwargs) -> list[float]:
    """The gold scorer, accepting TRL's conversational completions ([{"role": "assistant", "content": ...}])."""
    from reinforce_edu.llm.rewards import gold_reward
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return gold_reward(texts)


def _summary(step_times: list[float], gen_times: list[float], tokens: list[int], warmup: int) -> dict:
    s, g, n = step_times[warmup:], gen_times[warmup:], tokens[warmup:]
    med = statistics.median(s)
    return {"s_per_step": med, "s_per_step_min": min(s), "s_per_step_max": max(s), "step_times": step_times,
            "gen_s_per_step": statistics.median(g), "samples_per_s": P * K / med,
            "tokens_per_s": sum(n) / sum(s), "completion_tokens_per_step": sum(n) / len(n)}


def worker_trl(precision: str, steps: int, warmup: int, kept_memory: bool = False) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    from reinforce_edu.perf.allocator import keep_freed_memory
    from reinforce_edu.perf.measure import PeakMemory
    from reinforce_edu.llm.models import load_model, cache_dir
    if kept_memory:
        keep_freed_memory()
    load_model()  # makes sure the dequantised SmolLM2 folder exists (no-op when cached)
    path = str(cache_dir() / "smollm2")
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts()])
    out = tempfile.mkdtemp(prefix="vs_trl_")
    settings = dict(output_dir=out, per_device_train_batch_size=P * K, num_generations=K,
                    max_completion_length=NEW_TOKENS, beta=BETA, learning_rate=LR, max_steps=warmup + steps,
                    temperature=1.0, report_to="none", save_strategy="no", logging_steps=10_000, use_cpu=True,
                    seed=0, disable_tqdm=True, dataloader_num_workers=0)
    if precision != "default":
        settings["bf16"] = precision == "bf16"
    args = RLOOConfig(**settings)
    trainer = RLOOTrainer(model=path, reward_funcs=_text_reward, args=args, train_dataset=ds)
    step_times, gen_times, tokens = [], [], []
    generate = trainer._generate

    def timed_generate(prompts):
        start = time.perf_counter()
        result = generate(prompts)
        gen_times.append(time.perf_counter() - start)
        tokens.append(sum(len(c) for c in result[1]))
        return result

    trainer._generate = timed_generate

    class StepTimer(TrainerCallback):  # also prints each step, so a run stopped by --timeout still tells
        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()
            print(f"{STEP_BEGIN} {time.time()}", flush=True)

        def on_step_end(self, *a, **k):
            step_times.append(time.perf_counter() - self.start)
            print(f"{STEP_END} {step_times[-1]}", flush=True)

    trainer.add_callback(StepTimer())
    with PeakMemory("cpu") as mem:
        trainer.train()
    res = _summary(step_times, gen_times, tokens, warmup)
    res.update(peak_rss_mib=mem.peak / 2 ** 20, bf16=bool(args.bf16),
               gradient_checkpointing=bool(args.gradient_checkpointing),
               mixed_precision=str(trainer.accelerator.mixed_precision), trl_version=__import__("trl").__version__,
               kept_memory=kept_memory)
    return res


def worker_ours(precision: str, steps: int, warmup: int) -> dict:
    import torch

    from reinforce_edu.llm.logprobs import completion_logprobs
    from reinforce_edu.perf.measure import PeakMemory, count_flops, matmul_peak, matmul_share
    ours = trainer(steps=warmup + steps + 1, dtype="auto" if precision == "default" else precision)
    gen_times, tokens, rollouts = [], [], []
    rollout = ours.rollout

    def timed_rollout(*a, **k):
        start = time.perf_counter()
        r = rollout(*a, **k)
        gen_times.append(time.perf_counter() - start)
        tokens.append(int(r.completion_mask.sum()))
        rollouts.append(r)
        return r

    ours.rollout = timed_rollout
    step_times, score_times = [], []
    score = ours.score

    def timed_score(*a, **k):
        start = time.perf_counter()
        result = score(*a, **k)
        score_times.append(time.perf_counter() - start)
        return result

    ours.score = timed_score
    with PeakMemory("cpu") as mem:
        for _ in range(warmup + steps):
            start = time.perf_counter()
            ours.train_step()
            step_times.append(time.perf_counter() - start)
            rollouts.clear()
    res = _summary(step_times, gen_times, tokens, warmup)
    train_times = [s - g - r for s, g, r in zip(step_times, gen_times, score_times)][warmup:]
    res["train_s_per_step"] = statistics.median(train_times)

    # FLOPs of the train phase of one more step = FLOPs of the step − FLOPs of its generation
    gen_flops = []

    def counted_rollout(*a, **k):
        flops, r = count_flops(lambda: timed_rollout(*a, **k))
        gen_flops.append(flops)
        return r

    ours.rollout = counted_rollout
    step_flops, _ = count_flops(ours.train_step)
    res["train_flops_per_step"] = step_flops - gen_flops[0]
    res["gen_flops_per_step"] = gen_flops[0]
    res["train_gflops_per_s"] = res["train_flops_per_step"] / res["train_s_per_step"] / 1e9

    # where the train phase's time goes: one more step on the last samples, under the profiler
    last = rollouts[-1]
    ours.rollout = lambda *a, **k: last
    res["train_matmul_share"], _ = matmul_share(ours.train_step)
    res["peak_rss_mib"] = mem.peak / 2 ** 20
    res["kept_memory"] = ours.config.keep_freed_memory
    res["ran_in"] = ours.precision.as_dict()
    res["matmul_peak_gflops"] = matmul_peak(ours.precision.dtype)  # the peak of the precision it ran in
    if ours.precision.name == "fp32":
        return res

    # autocast vs fp32 log-probs of the same completions, same weights
    r = rollouts[-1]
    m = r.completion_mask > 0
    with torch.no_grad():
        with ours.precision.autocast():
            lp16 = completion_logprobs(ours.policy, r.input_ids, r.attention_mask, r.prompt_length)
        lp32 = completion_logprobs(ours.policy, r.input_ids, r.attention_mask, r.prompt_length)
    diff = (lp16 - lp32)[m]
    seq = ((lp16 - lp32) * m).sum(1)
    res["logprob_mismatch"] = {"token_max_abs": diff.abs().max().item(), "token_mean_abs": diff.abs().mean().item(),
                               "token_mean": diff.mean().item(), "sequence_max_abs": seq.abs().max().item(),
                               "sequence_mean_abs": seq.abs().mean().item(), "dtype": str(lp16.dtype)}
    return res


def run_worker(args) -> None:
    import torch
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker == "ours":
        res = worker_ours(args.precision, args.steps, args.warmup)
    else:
        res = worker_trl(args.precision, args.steps, args.warmup, kept_memory=args.worker == "trl-kept")
    res.update(side=args.worker, precision=args.precision, threads=torch.get_num_threads())
    from reinforce_edu.perf.provenance import report_result
    report_result(res)


# ----------------------------------------------------------------------------- driver

def _stopped_steps(stdout: str, stopped_at: float) -> dict:
    """A worker stopped by --timeout: its finished steps' seconds, and its s/step as far as it got.

    That is the median of the finished steps (a measurement, not a bound) or, where none finished, the
    time the unfinished step had run when it was stopped (a lower bound: it would have taken longer)."""
    finished, began = [], None
    for line in stdout.splitlines():
        word, _, value = line.partition(" ")
        if word == STEP_END:
            finished.append(float(value))
            began = None
        elif word == STEP_BEGIN:
            began = float(value)
    running = stopped_at - began if began is not None else 0.0
    bound = statistics.median(finished) if finished else running
    return {"finished_step_times": finished, "unfinished_step_ran_s": running, "s_per_step_at_least": bound}


def ran_in(res: dict) -> str:
    """The precision a timed run computed in: ours records it, TRL's is its `bf16` flag."""
    if res["side"] == "ours":
        return res["ran_in"]["name"]
    return "bf16" if res["bf16"] else "fp32"


def _spawn(side: str, precision: str, args) -> dict | None:
    from reinforce_edu.perf.provenance import run_worker
    cmd = [sys.executable, __file__, "--worker", side, "--precision", precision, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads)]
    res = run_worker(cmd, cwd=ROOT, label=f"{side} {precision}", env=dict(os.environ, PYTHONPATH=str(ROOT)),
                     timeout=args.timeout)
    if res is not None and "timed_out_s" in res:  # kept: a lower bound on its time per step
        res.update(side=side, precision=precision, **_stopped_steps(res.pop("partial_stdout"), res["stopped_at"]))
        print(f"  {side:<9} {precision:<7} at least {res['s_per_step_at_least']:.0f} s/step ("
              f"{len(res['finished_step_times'])} step(s) finished before it was stopped after {args.timeout:.0f} s)",
              flush=True)
    elif res is not None:
        print(f"  {side:<9} {precision:<5} {res['s_per_step']:6.2f} s/step  ({res['wall_s']:.0f} s in all)", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    parser = workload.parser(__doc__, steps=6, warmup=2, warmup_help="untimed first steps (kernel selection, page faults)")
    parser.add_argument("--repeats", type=int, default=1, help="run the whole set of configurations this many times")
    parser.add_argument("--precisions", nargs="+", default=["default", "fp32"], choices=PRECISIONS,
                        help="configurations to time: each side's default, or both in fp32 / bf16")
    parser.add_argument("--trl-kept-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="also time TRL with our allocator setting (freed memory kept in the process)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop a configuration after this many seconds and report a lower bound on its "
                             "s/step (e.g. TRL's bf16 default on a CPU without native bf16)")
    parser.add_argument("--worker", choices=["trl", "trl-kept", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    args = workload.parse(parser, argv, min_warmup=0)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.worker:
        run_worker(args)
        return 0

    import importlib.util

    import torch

    from reinforce_edu.perf.provenance import device_description
    from reinforce_edu.perf.precision import choose_precision
    have_trl = importlib.util.find_spec("trl") is not None
    if not have_trl:
        print("trl is not installed: only our side runs. Install the optional extra with "
              "`pip install -e '.[bench]'` to compare.", file=sys.stderr)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    chosen = choose_precision("cpu", verbose=False)  # what dtype="auto" picks here, and the probe behind it
    print(f"{device_description()}, torch {torch.__version__}, load average {load[0]:.1f}")
    print(f"ours by default: {chosen.describe()}")
    print(f"workload: P={P} x k={K} = {P * K} completions x <= {NEW_TOKENS} new tokens, beta={BETA}, "
          f"{args.warmup} warm-up + {args.steps} timed steps")
    results = []
    for rep in range(args.repeats):
        for precision in args.precisions:  # alternate the sides, so that a change of load hits both
            trl_sides = (["trl"] + (["trl-kept"] if args.trl_kept_memory else [])) if have_trl else []
            for side in trl_sides + ["ours"]:
                res = _spawn(side, precision, args)
                if res is not None:
                    res["repeat"] = rep
                    results.append(res)

    def pick(side, precision, finished=True):
        return [r for r in results if r["side"] == side and r["precision"] == precision
                and ("s_per_step" in r) == finished]

    print(f"\n{'side':<10}{'precision':<22}{'s/step':>8}{'(min-max)':>14}{'generate':>10}{'samples/s':>11}"
          f"{'tokens/s':>10}{'peak RSS':>10}")
    for precision in args.precisions:
        for side in ("trl", "trl-kept", "ours"):
            for r in pick(side, precision):
                label = precision + (f" ({ran_in(r)})" if precision == "default" else "")
                spread = f"{r['s_per_step_min']:>7.2f}-{r['s_per_step_max']:<6.2f}"
                print(f"{side:<10}{label:<22}{r['s_per_step']:>8.2f}{spread}"
                      f"{r['gen_s_per_step']:>10.2f}{r['samples_per_s']:>11.2f}{r['tokens_per_s']:>10.1f}"
                      f"{r['peak_rss_mib']:>8.0f}Mi")
    summary, versus_kept, at_least = {}, {}, {}
    for precision in args.precisions:
        for side in ("trl", "trl-kept", "ours"):
            for r in pick(side, precision, finished=False):
                print(f"{side:<10}{precision:<22}{'>= ' + format(r['s_per_step_at_least'], '.0f'):>8}"
                      f"   (stopped after {r['timed_out_s']:.0f} s, {len(r['finished_step_times'])} step(s) done)")
    for precision in args.precisions:
        trl, ours = pick("trl", precision), pick("ours", precision)
        slow = pick("trl", precision, finished=False)
        if slow and ours:
            at_least[precision] = [t["s_per_step_at_least"] / o["s_per_step"] for t, o in zip(slow, ours)]
            print(f"speed-up, {precision}: at least " + ", ".join(f"{x:.1f}x" for x in at_least[precision])
                  + " (TRL stopped by --timeout)")
        if trl and ours:
            ratios = [t["s_per_step"] / o["s_per_step"] for t, o in zip(trl, ours)]
            summary[precision] = ratios
            if precision == "default":
                print(f"speed-up, TRL's default ({ran_in(trl[0])}) / ours default ({ran_in(ours[0])}): "
                      + ", ".join(f"{x:.2f}x" for x in ratios) + "   (reported; no target)")
            else:
                print(f"speed-up, matched {precision}: " + ", ".join(f"{x:.2f}x" for x in ratios)
                      + f"   target >= {TARGET_MATCHED:.0f}x: {'met' if min(ratios) >= TARGET_MATCHED else 'MISSED'}")
        kept = pick("trl-kept", precision)
        if kept and ours:
            versus_kept[precision] = [t["s_per_step"] / o["s_per_step"] for t, o in zip(kept, ours)]
            print(f"  against TRL with the same allocator setting ({precision}): "
                  + ", ".join(f"{x:.2f}x" for x in versus_kept[precision]))
    for r in pick("ours", "default") + pick("ours", "fp32") + pick("ours", "bf16"):
        frac = r["train_gflops_per_s"] / r["matmul_peak_gflops"]
        print(f"our train phase ({r['precision']}, ran in {ran_in(r)}): {r['train_flops_per_step'] / 1e9:.0f} GFLOP in "
              f"{r['train_s_per_step']:.2f} s = {r['train_gflops_per_s']:.0f} GFLOP/s = {frac:.0%} of the "
              f"{ran_in(r)} matmul peak ({r['matmul_peak_gflops']:.0f} GFLOP/s); "
              f"{r['train_matmul_share']:.0%} of its CPU time in matmul kernels")
        mm = r.get("logprob_mismatch")
        if mm:
            print(f"  {ran_in(r)}-autocast vs fp32 log-probs (fp32 logsumexp both): per token max |d| "
                  f"{mm['token_max_abs']:.3f}, mean |d| {mm['token_mean_abs']:.4f}, mean d {mm['token_mean']:+.4f}; "
                  f"per sequence mean |d| {mm['sequence_mean_abs']:.3f}, max {mm['sequence_max_abs']:.3f} nats")
    workload.store(args, argv, __file__, load, ours_default_precision=chosen.as_dict(), speedup=summary, speedup_at_least=at_least, speedup_vs_trl_kept_memory=versus_kept, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
