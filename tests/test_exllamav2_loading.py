"""What the ExLlamaV2 engine reads from a model folder without a GPU: format detection, the vocabulary (BOS,
raw token bytes, EOS), the chat template, the cache plan, the tensors handed to ExLlamaV2, and the refusal to
load without CUDA or the extra."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from inferno.core.engines.base import ModelDescription
from inferno.core.engines.exllamav2 import load
from inferno.core.engines.exllamav2.loader import (
    PAGE_TOKENS,
    bias_tensor,
    input_ids_tensor,
    llguidance_filter_class,
    plan_cache,
)
from inferno.core.engines.exllamav2.model_folder import (
    chat_template_source,
    describe_model_folder,
    eos_token_ids,
)
from inferno.core.engines.exllamav2.vocabulary import TokenizerVocabulary
from inferno.core.engines.loading import EngineLoad
from inferno.engine_settings import EngineSettings
from inferno.errors import InfernoError
from tests.tiny_llama import write_tiny_llama

TEXT = "The quick brown fox, café ☃ — 東京!\n\tend"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def folder(tiny: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model folder a test may edit."""
    return Path(shutil.copytree(tiny, tmp_path / "model"))


def edit_json(path: Path, **fields: object) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**data, **fields}))


def test_a_safetensors_folder_is_fp16(tiny: Path) -> None:
    described = describe_model_folder(tiny)
    assert described is not None
    config = json.loads((tiny / "config.json").read_text())
    assert (described.format, described.context_length, described.vocab_size) == (
        "fp16",
        256,
        config["vocab_size"],
    )
    assert described.size_bytes == sum(f.stat().st_size for f in tiny.iterdir())


def test_exllamav2s_quantization_config_makes_it_exl2(folder: Path) -> None:
    edit_json(folder / "config.json", quantization_config={"quant_method": "exl2", "bits": 4.0})
    described = describe_model_folder(folder)
    assert described is not None and described.format == "exl2"


def test_other_quantizations_and_folders_without_weights_are_not_models(folder: Path, tmp_path: Path) -> None:
    edit_json(folder / "config.json", quantization_config={"quant_method": "gptq", "bits": 4})
    assert describe_model_folder(folder) is None
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(folder / "config.json", bare / "config.json")
    assert describe_model_folder(bare) is None
    assert describe_model_folder(folder / "config.json") is None


def test_multimodal_configs_are_read_from_text_config(folder: Path) -> None:
    edit_json(folder / "config.json", text_config={"max_position_embeddings": 4096, "vocab_size": 999})
    config = json.loads((folder / "config.json").read_text())
    del config["max_position_embeddings"], config["vocab_size"]
    (folder / "config.json").write_text(json.dumps(config))
    described = describe_model_folder(folder)
    assert described is not None and (described.context_length, described.vocab_size) == (4096, 999)


def test_eos_is_config_and_generation_config_together(folder: Path) -> None:
    edit_json(folder / "generation_config.json", eos_token_id=[5, 7])
    assert eos_token_ids(folder) == {0, 5, 7}
    vocabulary = TokenizerVocabulary(folder)
    assert [t for t in range(10) if vocabulary.is_end_of_generation(t)] == [0, 5, 7]


def test_token_bytes_spell_the_text_back_byte_for_byte(tiny: Path) -> None:
    vocabulary = TokenizerVocabulary(tiny)
    tokens = vocabulary.tokenize(TEXT, add_special=False)
    assert b"".join(vocabulary.token_bytes(t) for t in tokens) == TEXT.encode()
    # Multi-byte characters are split over byte tokens, each token one raw byte.
    assert any(len(vocabulary.token_bytes(t)) == 1 and vocabulary.token_bytes(t)[0] >= 0x80 for t in tokens)


def test_control_tokens_have_no_bytes_and_are_parsed_in_text(tiny: Path) -> None:
    vocabulary = TokenizerVocabulary(tiny)
    assert vocabulary.token_bytes(0) == b""
    assert vocabulary.tokenize("fox<|endoftext|>", add_special=False)[-1] == 0


def test_bos_follows_add_bos_token(folder: Path) -> None:
    assert TokenizerVocabulary(folder).tokenize("fox")[0] != 0  # the tiny model says add_bos_token: false
    edit_json(folder / "tokenizer_config.json", add_bos_token=True)
    vocabulary = TokenizerVocabulary(folder)
    with_bos = vocabulary.tokenize("fox")
    assert with_bos[0] == 0
    assert with_bos[1:] == vocabulary.tokenize("fox", add_special=False)


def test_bos_from_the_tokenizers_post_processor_when_the_config_is_silent(folder: Path) -> None:
    # Llama 3 folders add <|begin_of_text|> in tokenizer.json's post-processor, not in tokenizer_config.json.
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["add_bos_token"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
        ],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}},
    }
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    vocabulary = TokenizerVocabulary(folder)
    assert vocabulary.tokenize("fox")[0] == 0
    assert vocabulary.tokenize("fox", add_special=False)[0] != 0


def test_sentencepiece_pieces_decode_to_raw_bytes(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = {
        "<unk>": 0,
        "<s>": 1,
        "</s>": 2,
        "<0x0A>": 3,
        "<0xE2>": 4,
        "▁": 5,
        "f": 6,
        "o": 7,
        "x": 8,
        "▁fox": 9,
    }
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    vocabulary = TokenizerVocabulary(tmp_path)
    assert [vocabulary.token_bytes(t) for t in (3, 4, 5, 9)] == [b"\n", b"\xe2", b" ", b" fox"]
    assert vocabulary.is_end_of_generation(2) and not vocabulary.is_end_of_generation(1)


def test_chat_template_from_tokenizer_config_or_its_own_file(folder: Path) -> None:
    assert chat_template_source(folder) is None
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert chat_template_source(folder) == "{{ messages[0]['content'] }}"
    edit_json(folder / "tokenizer_config.json", chat_template="{{ bos_token }}hi")
    assert chat_template_source(folder) == "{{ bos_token }}hi"
    edit_json(
        folder / "tokenizer_config.json",
        chat_template=[{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
    )
    assert chat_template_source(folder) == "D"


def test_paged_cache_holds_every_sequence_at_full_context_in_whole_pages() -> None:
    plan = plan_cache(EngineSettings(parallel_sequences=4, context_length=1000), 1000, paged=True)
    assert (plan.max_sequences, plan.cache_tokens) == (4, 4096)
    assert plan.cache_tokens % PAGE_TOKENS == 0


def test_cache_tokens_sets_the_paged_cache_but_fits_one_whole_context() -> None:
    settings = EngineSettings(parallel_sequences=8, cache_tokens=10_000)
    assert plan_cache(settings, 4096, paged=True).cache_tokens == 10_240
    assert plan_cache(EngineSettings(cache_tokens=100), 4096, paged=True).cache_tokens == 4096


def test_unpaged_runs_one_sequence_in_one_context() -> None:
    plan = plan_cache(EngineSettings(parallel_sequences=8, cache_tokens=50_000), 3000, paged=False)
    assert (plan.max_sequences, plan.cache_tokens) == (1, 3072)


def test_input_ids_are_a_long_row_tensor() -> None:
    ids = input_ids_tensor((5, 6, 7))
    assert (tuple(ids.shape), ids.dtype, ids.device.type) == ((1, 3), torch.long, "cpu")
    assert ids.tolist() == [[5, 6, 7]]


def test_logit_bias_is_a_float_tensor_over_the_padded_vocabulary() -> None:
    bias = bias_tensor(((3, -100.0), (30, 2.5)), 32)
    assert (tuple(bias.shape), bias.dtype) == ((32,), torch.float)
    assert bias[3].item() == -100.0 and bias[30].item() == 2.5
    assert float(bias.abs().sum()) == 102.5
    assert bias_tensor((), 32) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_or_the_extra_the_load_is_gpu_unavailable(tiny: Path) -> None:
    description = ModelDescription("tiny", str(tiny), "fp16", "exllamav2", "test", 0, 0, 0, 0)
    reports: list[tuple[str, float]] = []
    with pytest.raises(InfernoError) as caught:
        load(EngineLoad(description, tiny, EngineSettings(), lambda *r: reports.append(r)))
    error = caught.value
    assert (error.code, error.kind.http_status) == ("gpu_unavailable", 503)
    assert "no CUDA device" in error.message
    assert "pip install 'inferno-server[exllamav2]'" in error.message
    assert reports == []


def test_the_exllamav2_filter_forwards_the_generators_calls_to_the_constraint() -> None:
    class FilterBase:  # ExLlamaV2Filter's constructor and the state it keeps
        def __init__(self, model: object, tokenizer: object) -> None:
            self.model, self.tokenizer, self.background_result = model, tokenizer, None

    class Constraint:
        def __init__(self) -> None:
            self.calls: list[tuple[str, object]] = []

        def begin(self, prefix: str) -> None:
            self.calls.append(("begin", prefix))

        def feed(self, token: object) -> None:
            self.calls.append(("feed", token))

        def next(self) -> tuple[list[int], set[int]]:
            return [4, 5], set()

    constraint = Constraint()
    grammar_filter = llguidance_filter_class(FilterBase)("model", "tokenizer", constraint)
    grammar_filter.begin("")
    grammar_filter.feed(7)
    assert grammar_filter.next() == ([4, 5], set())
    assert constraint.calls == [("begin", ""), ("feed", 7)]
    assert (grammar_filter.model, grammar_filter.background_result) == ("model", None)
    assert grammar_filter.use_background_worker() and not grammar_filter.can_mask_logits()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_smoke_script_stops_at_the_gpu_check(tiny: Path) -> None:
    from inferno.core.engines.exllamav2 import smoke

    with pytest.raises(InfernoError) as caught:
        smoke.main([str(tiny), "--tokens", "4"])
    assert caught.value.code == "gpu_unavailable"
