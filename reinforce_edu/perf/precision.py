r"""Which precision a device computes fast in: bf16 or fp16 autocast, or plain fp32 — chosen by what the hardware does.

Mixed precision halves the bytes of every matmul operand, but it pays only where the hardware
multiplies 16-bit numbers natively. A CPU with AMX or AVX512-BF16 runs a bf16 matmul 2–3× faster
than an fp32 one; a CPU with AVX2 only (AMD Zen 2/3, Intel Core before AVX512-BF16, many ARM chips)
emulates it, and there a bf16 matmul is ~100× *slower* (2-core AMD EPYC Zen 3, torch 2.13, one
512×512 matmul: fp32 126 GFLOP/s, bf16 1.2 GFLOP/s). So "auto" decides per device:

    CUDA, bf16 supported (compute capability ≥ 8: A100, H100, L4, RTX 30xx+)  -> bf16 autocast
    CUDA without bf16 (T4, V100, the usual free notebook GPU)                 -> fp16 autocast + loss scaling
    CPU                  -> bf16 autocast only where a matmul probe shows bf16 ≥ 1.2× fp32; else fp32
    Apple mps            -> fp32 (fp16/bf16 autocast on request; not tested here: no Apple GPU)

Why fp16 with loss scaling, not fp32, on a T4: its tensor cores multiply fp16 at 65 TFLOP/s
against 8 TFLOP/s in fp32 (NVIDIA's data sheet; not measured here, no such GPU was at hand).
fp16 has 5 exponent bits, so small gradients underflow to 0: the loss is multiplied by a scale
S before backward (`torch.amp.GradScaler`), the gradients divided by S before clipping, and a
step whose scaled gradients overflow is skipped while S halves. bf16 has fp32's 8 exponent
bits and needs no scaling.

In every precision the weights AdamW updates stay fp32 ("master weights": a 16-bit weight would
round away updates smaller than 2⁻⁸ of it), and log-probabilities are taken in fp32
(logprobs.token_logprobs). The probe runs once per process (cached, ~0.2 s on the slow CPU,
a few ms on a fast one) and its figures are printed with the decision, so a student sees why.

Used by the trainer, the reward model's feature pass, llm_variance, scripts/make_data.py, the
benchmarks and lessons 00 and 05–07.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import asdict, dataclass

import torch

DTYPES = ("auto", "bf16", "fp16", "fp32")
"""Values of a `dtype=` setting: "auto" (chosen per device, see the module docstring) or a precision."""
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
BF16_MIN_SPEEDUP = 1.2
"""A CPU gets bf16 autocast when its probe's bf16 matmul is at least this much faster than fp32:
autocast adds a cast of every weight and activation, which a small gain does not repay."""

_printed: set[tuple] = set()


@dataclass(frozen=True)
class Precision:
    """A compute precision chosen for a device, and why.

    name: "bf16" | "fp16" | "fp32"; device: the torch device type ("cpu", "cuda", "mps");
    reason: one sentence; probe: the CPU matmul probe's figures (`cpu_matmul_probe`), if one ran.
    """

    name: str
    device: str
    reason: str
    probe: dict | None = None

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype of the autocast matmuls (torch.float32 for "fp32": no autocast)."""
        return TORCH_DTYPES[self.name]

    @property
    def loss_scaling(self) -> bool:
        """fp16 needs the loss scaled before backward (its gradients underflow otherwise)."""
        return self.name == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """`torch.autocast` in this precision on this device, or nothing for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device, dtype=self.dtype)

    def as_dict(self) -> dict:
        """For a run's config.json and stored results."""
        return asdict(self)

    def describe(self) -> str:
        """One line: the choice, the device and the reason."""
        return f"precision {self.name} on {self.device}: {self.reason}"


def cpu_matmul_probe(n: int = 256, repeats: int = 3) -> dict:
    """GFLOP/s of an (n, n) @ (n, n) matmul in fp32 and in bf16 on this CPU, best of `repeats` after a warm-up.

    Returns {"n", "threads", "fp32_gflops", "bf16_gflops", "bf16_speedup", "seconds"}. Where the
    first size leaves the answer open (bf16 within 2× of fp32 either way), a 1024 matmul decides:
    a small matmul under-states a bf16 unit's speed (its set-up is a larger share).
    """
    start = time.perf_counter()

    def gflops(dtype: torch.dtype, size: int) -> float:
        g = torch.Generator().manual_seed(0)
        a, b = (torch.randn(size, size, generator=g).to(dtype) for _ in range(2))
        a @ b  # warm-up: kernel choice, packing buffers
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        return 2 * size ** 3 / best / 1e9

    fp32, bf16 = gflops(torch.float32, n), gflops(torch.bfloat16, n)
    if 0.5 < bf16 / fp32 < 2.0:
        n = 1024
        fp32, bf16 = gflops(torch.float32, n), gflops(torch.bfloat16, n)
    return {"n": n, "threads": torch.get_num_threads(), "fp32_gflops": round(fp32, 2), "bf16_gflops": round(bf16, 2),
            "bf16_speedup": round(bf16 / fp32, 4), "seconds": round(time.perf_counter() - start, 3)}


@functools.cache
def _cached_cpu_probe() -> dict:
    return cpu_matmul_probe()


def _cuda_bf16(device: torch.device) -> bool:
    """Native bf16 matmuls: compute capability 8.0 or newer (Ampere on)."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def _cuda_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device)


def choose_precision(device: torch.device | str, dtype: str = "auto", *, probe: dict | None = None,
                     verbose: bool = True) -> Precision:
    """The compute precision for `device`: `dtype` if given, else the fast one (module docstring).

    device: a torch.device or "cpu" / "cuda[:i]" / "mps". dtype: one of DTYPES. probe: CPU probe
    figures to decide on (default: `cpu_matmul_probe()`, measured once per process). verbose: print
    the decision once per process (per device and setting).
    Raises ValueError naming `dtype` for an unknown value or one the device cannot run.
    """
    if not isinstance(dtype, str):
        raise TypeError(f"dtype must be a str, one of {DTYPES}, got {type(dtype).__name__}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    device = torch.device(device)
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be a cpu, cuda or mps device, got {str(device)!r}")
    kind, figures = device.type, None
    if kind == "cuda":
        bf16_ok = _cuda_bf16(device)
        if dtype == "bf16" and not bf16_ok:
            raise ValueError(f"dtype='bf16' but {_cuda_name(device)} has no bf16 support "
                             f"(compute capability < 8); use dtype='fp16' (with loss scaling), 'fp32' or 'auto'")
        if dtype != "auto":
            choice = Precision(dtype, kind, "as requested")
        elif bf16_ok:
            choice = Precision("bf16", kind, "the GPU multiplies bf16 natively (compute capability >= 8)")
        else:
            choice = Precision("fp16", kind, "the GPU has no bf16 but fp16 tensor cores (~8x its fp32 rate on a T4); "
                                             "the loss is scaled against underflow")
    elif kind == "mps":
        choice = Precision(dtype, kind, "as requested") if dtype != "auto" else \
            Precision("fp32", kind, "autocast on Apple GPUs is not tested in this course; fp32 is the safe choice")
    elif dtype != "auto":
        choice = Precision(dtype, kind, "as requested")
    else:
        figures = dict(probe) if probe is not None else _cached_cpu_probe()
        speedup = figures["bf16_speedup"]
        fast = speedup >= BF16_MIN_SPEEDUP
        choice = Precision("bf16" if fast else "fp32", kind,
                           f"a {figures['n']}x{figures['n']} matmul on {figures['threads']} thread(s) runs "
                           f"{figures['bf16_gflops']:.1f} GFLOP/s in bf16 and {figures['fp32_gflops']:.1f} in fp32 "
                           f"(bf16 {speedup:.2g}x, {'>=' if fast else '<'} {BF16_MIN_SPEEDUP}x)", figures)
    key = (str(device), dtype, choice.name)
    if verbose and key not in _printed:
        _printed.add(key)
        print(choice.describe(), flush=True)
    return choice


def check_autocast(model: torch.nn.Module, name: str = "model") -> None:
    """Raise a clear ValueError where `model` stores weights in two float dtypes and no autocast is on.

    A bf16 trainer stores π_ref's frozen linear weights (and a LoRA policy's base weights) in bf16 beside
    fp32 norms and embeddings: its matmuls then mix dtypes unless they run under the trainer's autocast.
    """
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(dtypes) < 2:
        return
    device = next(model.parameters()).device.type
    if not torch.is_autocast_enabled(device):
        names = sorted(str(d).removeprefix("torch.") for d in dtypes)
        raise ValueError(f"{name} stores its weights in {' and '.join(names)} (a frozen π_ref or LoRA base of a "
                         f"{names[0]} trainer); run it under the trainer's autocast: `with trainer.autocast(): ...`")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA if available, else Apple mps if available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available; use device='cpu' or 'auto'")
    if device == "mps" and not _mps_available():
        raise ValueError("device='mps' but no Apple GPU is available; use device='cpu' or 'auto'")
    return torch.device(device)
