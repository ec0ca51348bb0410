"""Loads a GGUF file with llama.cpp: a generating model (decoder, chat template, embeddings on first use) or
an embedding-only one (BERT and kin)."""

from __future__ import annotations

import logging
from dataclasses import replace

import psutil

from inferno.core.chat_template import CHATML_TEMPLATE, ChatTemplate
from inferno.core.engines.base import ModelDescription
from inferno.core.engines.capabilities import EngineCapabilities
from inferno.core.engines.llamacpp.cpu_path import process_cpu_path
from inferno.core.engines.llamacpp.decoder import LlamaCppDecoder, threads_for
from inferno.core.engines.llamacpp.embedder import LlamaCppEmbedder
from inferno.core.engines.llamacpp.model import GgufModel, init_llama_backend
from inferno.core.engines.loading import DeviceMemory, EmbeddingDecodeSink, EngineLoad, LoadedEngine
from inferno.core.gguf_header import read_gguf_metadata

log = logging.getLogger(__name__)

ENGINE_NAME = "llama.cpp"
CAPABILITIES = EngineCapabilities(
    engine=ENGINE_NAME,
    device="CPU (any x86-64 or ARM CPU llama.cpp supports)",
    formats=("gguf",),
    batching="runtime",
    embedding=True,
    conversion_targets=("gguf",),
)
# GGUF architectures whose models encode text into vectors and have no language-model head.
EMBEDDING_ONLY_ARCHITECTURES = frozenset({"bert", "nomic-bert", "jina-bert-v2", "modern-bert"})
# Share of a load's progress bar given to reading weights; creating the context is the rest.
_WEIGHTS_SHARE = 0.9


def load(request: EngineLoad) -> LoadedEngine:
    init_llama_backend()
    read_gguf_metadata(request.path)  # a clear error for a missing or corrupt file before llama.cpp sees it
    request.report("reading_weights", 0.0)
    cpu_path = process_cpu_path()  # probes the fast path in a child process before the first load
    rss_before = psutil.Process().memory_info().rss
    model = GgufModel(
        request.path, lambda f: request.report("reading_weights", f * _WEIGHTS_SHARE), cpu_path.repack
    )
    request.report("creating_context", _WEIGHTS_SHARE)
    try:
        return _loaded(request, model, rss_before, cpu_path.device)
    except BaseException:
        model.close()
        raise


def _loaded(request: EngineLoad, model: GgufModel, rss_before: int, cpu_path: str) -> LoadedEngine:
    settings = request.settings
    threads = threads_for(settings)
    embedding_only = model.metadata("general.architecture") in EMBEDDING_ONLY_ARCHITECTURES
    context_length = model.n_ctx_train if embedding_only else settings.resolved_context(model.n_ctx_train)
    description = ModelDescription(
        **{**request.description.__dict__, "context_length": context_length, "vocab_size": model.n_vocab}
    )
    embedders: list[LlamaCppEmbedder] = []

    def make_embedder(on_decode: EmbeddingDecodeSink) -> LlamaCppEmbedder:
        embedders.append(LlamaCppEmbedder(model, threads, on_decode))
        return embedders[-1]

    decoder = None if embedding_only else LlamaCppDecoder(description.id, model, settings, context_length)
    template = None
    if decoder is not None:
        source = model.chat_template() or CHATML_TEMPLATE
        template = ChatTemplate(source, model.token_text(model.bos), model.token_text(model.eos))
    host_bytes = description.file_size_bytes + max(psutil.Process().memory_info().rss - rss_before, 0)
    weight_layout = model.weight_buffers.describe()
    log.info("%s: %s", description.id, weight_layout)

    def close() -> None:
        for embedder in embedders:
            embedder.close()
        model.close()

    return LoadedEngine(
        description=description,
        capabilities=CAPABILITIES if decoder is not None else _EMBEDDING_ONLY,
        vocabulary=model,
        chat_template=template,
        generator=decoder,
        make_embedder=make_embedder,
        memory=lambda: DeviceMemory(host_bytes, cpu_path=cpu_path, weight_layout=weight_layout),
        close=close,
    )


_EMBEDDING_ONLY = replace(CAPABILITIES, generation=False, logprobs=False, prompt_logprobs=False)
