"""Loads a model folder (EXL2, or FP16/BF16 safetensors) with ExLlamaV2 on a CUDA GPU and wires the real
generator, job class and sampler settings into the scheduler.

torch and exllamav2 are imported inside load_model, never at module import: the registry imports the engine
package on the CPU install to read its capabilities.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from inferno.core.chat_template import CHATML_TEMPLATE, ChatTemplate
from inferno.core.engines.capabilities import EngineCapabilities
from inferno.core.engines.exllamav2.availability import INSTALL_HINT, exllamav2_missing
from inferno.core.engines.exllamav2.model_folder import chat_template_source, describe_model_folder
from inferno.core.engines.loading import DeviceMemory, EngineLoad, LoadedEngine
from inferno.engine_settings import EngineSettings
from inferno.errors import InfernoError

log = logging.getLogger(__name__)

# ExLlamaV2's paged attention works in pages of this many tokens; cache sizes are multiples of it.
PAGE_TOKENS = 256
# The generator's max_q_size default: tokens per sequence per forward pass. With the model's default
# max_batch_size 1 and max_input_len 2048, 2048 / 8 = 256 sequences at most.
_MAX_Q_SIZE = 8
# The exllamav2 extra's Python packages.
_EXTRA_MODULES = ("exllamav2", "tokenizers", "llguidance")
# Share of a load's progress given to reading weights; building the generator and grammar tables is the rest.
_WEIGHTS_SHARE = 0.9


def load_model(request: EngineLoad, capabilities: EngineCapabilities) -> LoadedEngine:
    """Raises gpu_unavailable without CUDA or without the extra, model_load_failed for a folder ExLlamaV2
    cannot load."""
    _require_gpu()
    folder = describe_model_folder(request.path)
    if folder is None:
        raise InfernoError(
            "model_load_failed",
            f"{request.path.name} is not a model folder ExLlamaV2 can load (config.json and .safetensors "
            "weights, unquantized or EXL2)",
            {"path": request.path.name},
        )
    exl = _import_exllamav2()
    import torch

    request.report("reading_weights", 0.0)
    config = exl.Config(str(request.path))
    config.arch_compat_overrides()
    context = request.settings.resolved_context(config.max_seq_len or folder.context_length)
    config.max_seq_len = context
    paged = bool(exl.has_paged_attention) and not config.no_flash_attn
    plan = plan_cache(request.settings, context, paged)
    if plan.max_sequences * _MAX_Q_SIZE > config.max_batch_size * config.max_input_len:
        raise InfernoError(
            "model_load_failed",
            f"parallel_sequences {plan.max_sequences} is more than ExLlamaV2 batches "
            f"({config.max_batch_size * config.max_input_len // _MAX_Q_SIZE} at most)",
        )
    held: dict[str, Any] = {}
    try:
        held["model"] = model = exl.Model(config)
        held["cache"] = cache = exl.Cache(model, max_seq_len=plan.cache_tokens, lazy=True)
        model.load_autosplit(
            cache,
            callback=lambda done, total: request.report(
                "reading_weights", _WEIGHTS_SHARE * done / max(total, 1)
            ),
        )
        request.report("creating_context", _WEIGHTS_SHARE)
        tokenizer = exl.Tokenizer(config)
        held["generator"] = exl.DynamicGenerator(
            model=model,
            cache=cache,
            tokenizer=tokenizer,
            max_batch_size=plan.max_sequences,
            max_seq_len=context,
            paged=paged,
        )
        return _assemble(request, capabilities, exl, torch, held, tokenizer, config.vocab_size, context)
    except BaseException:
        _free(held, torch)
        raise


def _assemble(
    request: EngineLoad,
    capabilities: EngineCapabilities,
    exl: SimpleNamespace,
    torch: Any,
    held: dict[str, Any],
    tokenizer: Any,
    n_vocab: int,
    context: int,
) -> LoadedEngine:
    from inferno.core.engines.exllamav2.grammar import GrammarCompiler
    from inferno.core.engines.exllamav2.scheduler import ExLlamaV2Scheduler, JobBuilders
    from inferno.core.engines.exllamav2.vocabulary import TokenizerVocabulary

    model, generator = held["model"], held["generator"]
    vocabulary = TokenizerVocabulary(request.path, n_vocab)
    compiler = GrammarCompiler(vocabulary.tokenizer_json(), vocabulary.eos_ids)
    filter_class = llguidance_filter_class(exl.Filter)

    def settings(fields: dict[str, Any], logit_bias: tuple[tuple[int, float], ...]) -> Any:
        return exl.Settings(**fields, token_bias=bias_tensor(logit_bias, generator.padded_vocab_size))

    builders = JobBuilders(
        input_ids=input_ids_tensor,
        settings=settings,
        job=exl.DynamicJob,
        grammar_filter=lambda gbnf, param: filter_class(model, tokenizer, compiler.constraint(gbnf, param)),
    )
    template = ChatTemplate(
        chat_template_source(request.path) or CHATML_TEMPLATE, vocabulary.bos_text, vocabulary.eos_text
    )
    request.report("creating_context", 1.0)
    return LoadedEngine(
        description=replace(request.description, context_length=context, vocab_size=vocabulary.n_vocab),
        capabilities=capabilities,
        vocabulary=vocabulary,
        chat_template=template,
        generator=ExLlamaV2Scheduler(generator, builders, n_vocab),
        make_embedder=None,
        memory=lambda: DeviceMemory(
            device_bytes=int(torch.cuda.memory_allocated()), device_name=str(torch.cuda.get_device_name())
        ),
        close=lambda: _free(held, torch),
    )


@dataclass(frozen=True)
class CachePlan:
    """How many sequences run at once and how many tokens the KV cache holds."""

    max_sequences: int
    cache_tokens: int


def plan_cache(settings: EngineSettings, context: int, paged: bool) -> CachePlan:
    """Paged (flash-attn): parallel_sequences jobs share cache_tokens (0: parallel x context), paged in
    256-token pages, so a job runs when its prompt + max_tokens pages are free. Unpaged: one sequence at a
    time in a cache of one context; the rest wait in the generator's queue."""
    if not paged:
        return CachePlan(1, _round_up(context))
    cache_tokens = settings.cache_tokens or settings.parallel_sequences * context
    return CachePlan(settings.parallel_sequences, _round_up(max(cache_tokens, context)))


def input_ids_tensor(tokens: Sequence[int]) -> Any:
    """A prompt as ExLlamaV2DynamicJob's input_ids: a (1, n) torch.long tensor on the CPU."""
    import torch

    return torch.tensor([list(tokens)], dtype=torch.long)


def bias_tensor(logit_bias: tuple[tuple[int, float], ...], padded_vocab: int) -> Any:
    """logit_bias as ExLlamaV2's token_bias: a float tensor over the padded vocabulary (None: no bias)."""
    if not logit_bias:
        return None
    import torch

    bias = torch.zeros((padded_vocab,), dtype=torch.float)
    for token, value in logit_bias:
        bias[token] = value
    return bias


def llguidance_filter_class(base: type) -> type:
    """An ExLlamaV2Filter that forwards the generator's calls to a grammar.GrammarConstraint."""

    class LlguidanceFilter(base):
        def __init__(self, model: Any, tokenizer: Any, constraint: Any) -> None:
            super().__init__(model, tokenizer)
            self.constraint = constraint

        def begin(self, prefix_str: str = "") -> None:
            self.constraint.begin(prefix_str)

        def feed(self, token: Any) -> None:
            self.constraint.feed(token)

        def next(self) -> tuple[list[int], set[int]]:
            result: tuple[list[int], set[int]] = self.constraint.next()
            return result

        def use_background_worker(self) -> bool:
            return True

        def can_mask_logits(self) -> bool:
            return False

    return LlguidanceFilter


def _require_gpu() -> None:
    reason = exllamav2_missing(_EXTRA_MODULES)
    if reason:
        raise InfernoError(
            "gpu_unavailable",
            f"ExLlamaV2 models run on a CUDA GPU, and cannot here: {reason}",
            {"reason": reason},
        )


def _import_exllamav2() -> SimpleNamespace:
    try:
        from exllamav2 import ExLlamaV2, ExLlamaV2Cache, ExLlamaV2Config, ExLlamaV2Tokenizer
        from exllamav2.attn import has_flash_attn_with_paged
        from exllamav2.generator import ExLlamaV2DynamicGenerator, ExLlamaV2DynamicJob, ExLlamaV2Sampler
        from exllamav2.generator.filters import ExLlamaV2Filter
    except Exception as exc:  # its CUDA extension is built or loaded on import, and can fail in many ways
        reason = f"exllamav2 could not start: {exc}"
        raise InfernoError(
            "gpu_unavailable", f"{reason} (install with {INSTALL_HINT})", {"reason": reason}
        ) from exc
    return SimpleNamespace(
        Model=ExLlamaV2,
        Cache=ExLlamaV2Cache,
        Config=ExLlamaV2Config,
        Tokenizer=ExLlamaV2Tokenizer,
        DynamicGenerator=ExLlamaV2DynamicGenerator,
        DynamicJob=ExLlamaV2DynamicJob,
        Settings=ExLlamaV2Sampler.Settings,
        Filter=ExLlamaV2Filter,
        has_paged_attention=has_flash_attn_with_paged,
    )


def _free(held: dict[str, Any], torch: Any) -> None:
    """Frees the generator's buffers, the cache and the weights, then CUDA's cached blocks. Idempotent."""
    generator = held.pop("generator", None)
    if generator is not None:
        generator.clear_queue()
        for pool in (getattr(generator, "sampling_pool", None), getattr(generator, "filter_pool", None)):
            if pool is not None:
                pool.shutdown(wait=True)
        generator.defrag_buffer = None
    cache = held.pop("cache", None)
    if cache is not None:
        for tensors in (cache.key_states, cache.value_states, cache.key_scales, cache.value_scales):
            tensors.clear()
    model = held.pop("model", None)
    if model is not None:
        model.free_device_context()
        model.unload()
    gc.collect()
    # cuBLAS keeps a workspace per stream in torch's allocator (32 MiB each on Hopper); ExLlamaV2 runs on
    # its own stream, so these outlive the model unless cleared.
    clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear_workspaces is not None:
        clear_workspaces()
    torch.cuda.empty_cache()


def _round_up(tokens: int) -> int:
    return -(-tokens // PAGE_TOKENS) * PAGE_TOKENS
