"""The embedded SmolLM2-135M GGUF exported to a Hugging Face FP16 folder, measured against llama.cpp on the
same GGUF: the tokenizer gives llama.cpp's token ids, transformers' logits pick the same tokens, and the
folder converts back to a GGUF that llama.cpp runs to transformers' greedy tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
from llama_cpp import Llama
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from inferno.core.chat_template import ChatTemplate
from inferno.core.convert.converter import convert_checkpoint
from inferno.core.convert.export_hf import ExportResult, export_gguf_to_hf, main
from inferno.core.embedded import embedded_model_path
from inferno.errors import InfernoError

TEXT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg developed a "
    "system of movable metal type in Mainz. His invention made books far cheaper to produce, and within a "
    "few decades printing shops had spread to more than two hundred cities across Europe."
)
GREEDY_TOKENS = 16
TOKENIZER_CASES = [
    "Hello, world!",
    "café naïve résumé Straße Ångström",
    "emoji 😀🎉👍🏽 and 中文字符, 한국어, العربية",
    "def f(x):\n    return x**2  # square\n\tpass\r\n",
    "1234567890 3.14159 1,000,000 -42 2024-01-31",
    "spaces    and\t\ttabs\n\n\nnewlines   ",
    "  leading and trailing  ",
    "I'm can't we'll they've IT'S",
    "non\u00a0breaking and zero\u200bwidth, e\u0301 combining",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "a<|endoftext|>b<repo_name>c <|im_start",
    "",
]


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    return embedded_model_path()


@pytest.fixture(scope="module")
def export(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportResult, list[float]]:
    progress: list[float] = []
    result = export_gguf_to_hf(gguf_path, tmp_path_factory.mktemp("smollm2-hf"), on_progress=progress.append)
    return result, progress


@pytest.fixture(scope="module")
def folder(export: tuple[ExportResult, list[float]]) -> Path:
    return export[0].out_dir


@pytest.fixture(scope="module")
def tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def model(folder: Path) -> Any:
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def prompt_ids(gguf_path: Path) -> list[int]:
    for vocab in _llama(gguf_path, vocab_only=True):
        return list(vocab.tokenize(TEXT.encode(), add_bos=False, special=False))
    raise AssertionError


def _llama(path: Path, **options: Any) -> Iterator[Llama]:
    model = Llama(str(path), n_ctx=256, n_threads=2, verbose=False, **options)
    try:
        yield model
    finally:
        model.close()


@dataclass(frozen=True)
class Run:
    logits: np.ndarray  # one row per prompt position
    greedy: list[int]  # the next GREEDY_TOKENS tokens


def _llama_run(path: Path, ids: list[int]) -> Run:
    for model in _llama(path, logits_all=True):
        model.eval(ids)
        logits = np.array(model.scores[: len(ids)])
        tokens: list[int] = []
        for _ in range(GREEDY_TOKENS):
            tokens.append(int(np.argmax(model.scores[model.n_tokens - 1])))
            model.eval(tokens[-1:])
        return Run(logits, tokens)
    raise AssertionError


@pytest.fixture(scope="module")
def ours(model: Any, prompt_ids: list[int]) -> Run:
    """transformers on the exported folder, in float32."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids])).logits[0].numpy()
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=GREEDY_TOKENS, do_sample=False)
    return Run(logits, [int(t) for t in out[0, len(prompt_ids) :]])


@pytest.fixture(scope="module")
def reference(gguf_path: Path, prompt_ids: list[int]) -> Run:
    """llama.cpp on the original Q4_1 GGUF."""
    return _llama_run(gguf_path, prompt_ids)


def _agreement(a: Run, b: Run) -> float:
    return float((a.logits.argmax(1) == b.logits.argmax(1)).mean())


def test_folder_is_a_tied_fp16_llama_with_the_gguf_hyperparameters(
    export: tuple[ExportResult, list[float]], gguf_path: Path
) -> None:
    result, progress = export
    config = json.loads((result.out_dir / "config.json").read_text())
    reader = gguf.GGUFReader(str(gguf_path))
    meta = {name: field.contents() for name, field in reader.fields.items() if field.types}
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_hidden_layers"] == meta["llama.block_count"]
    assert config["num_key_value_heads"] == meta["llama.attention.head_count_kv"]
    assert config["rope_theta"] == meta["llama.rope.freq_base"]
    assert config["rms_norm_eps"] == 1e-5  # stored as float32 in the GGUF, written as the number it was
    assert config["tie_word_embeddings"] is True and result.tied_embeddings
    with safe_open(str(result.out_dir / "model.safetensors"), framework="np") as weights:
        names = set(weights.keys())
        assert weights.get_tensor("model.layers.0.self_attn.k_proj.weight").dtype == np.float16
    assert len(names) == len(reader.tensors) == result.tensors
    assert "lm_head.weight" not in names
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)


def test_tokenizer_gives_llama_cpp_token_ids(tokenizer: PreTrainedTokenizerBase, gguf_path: Path) -> None:
    for vocab in _llama(gguf_path, vocab_only=True):
        expected = {t: vocab.tokenize(t.encode(), add_bos=True, special=True) for t in TOKENIZER_CASES}
    got = {t: tokenizer(t)["input_ids"] for t in TOKENIZER_CASES}
    assert got == expected
    assert tokenizer.decode(got[TOKENIZER_CASES[2]]) == TOKENIZER_CASES[2]


def test_chat_template_renders_like_ours(tokenizer: PreTrainedTokenizerBase, gguf_path: Path) -> None:
    reader = gguf.GGUFReader(str(gguf_path))
    source = reader.fields[gguf.Keys.Tokenizer.CHAT_TEMPLATE].contents()
    messages = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"},
    ]
    ours = ChatTemplate(source, tokenizer.bos_token, tokenizer.eos_token).render(messages)
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == ours
    assert ours.endswith("<|im_start|>assistant\n")


def test_logits_pick_llama_cpp_tokens(ours: Run, reference: Run) -> None:
    # Measured on 53 positions: 52 agree (98.1%), mean |difference| 0.15 (largest 0.93) on logits spanning
    # about +-35. The gap is llama.cpp's Q4_1 matmuls (activations quantized to 8 bits) against FP16 weights
    # in float32; without undoing the rotary permutation agreement falls to 54% and the mean to 5.5.
    assert _agreement(ours, reference) >= 0.95
    assert float(np.abs(ours.logits - reference.logits).mean()) < 0.3


def test_greedy_tokens_follow_llama_cpp(ours: Run, reference: Run) -> None:
    # Measured: the first 14 of 16 are identical; then "in history" against "in the history", a near tie
    # the quantized matmuls break the other way.
    assert ours.greedy[:12] == reference.greedy[:12]


def test_folder_round_trips_through_our_converter(
    folder: Path, ours: Run, prompt_ids: list[int], tmp_path: Path
) -> None:
    converted = convert_checkpoint(folder, tmp_path / "smollm2.f16.gguf", "f16").output
    again = _llama_run(converted, prompt_ids)
    # Measured: all 53 positions agree, mean |difference| 0.004 (largest 0.026), all 16 greedy tokens match.
    assert _agreement(ours, again) == 1.0
    assert float(np.abs(ours.logits - again.logits).mean()) < 0.05
    assert again.greedy == ours.greedy


def test_other_architectures_are_refused(tmp_path: Path) -> None:
    bert = tmp_path / "bert.gguf"
    writer = gguf.GGUFWriter(str(bert), "bert")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(InfernoError, match="only 'llama'"):
        export_gguf_to_hf(bert, tmp_path / "out")
    with pytest.raises(SystemExit) as exited:
        main([str(bert), str(tmp_path / "out")])
    assert exited.value.code == 1


def test_unknown_dtype_is_refused(gguf_path: Path, tmp_path: Path) -> None:
    with pytest.raises(InfernoError, match="dtype"):
        export_gguf_to_hf(gguf_path, tmp_path / "out", dtype="int8")
