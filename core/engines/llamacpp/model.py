"""A GGUF model loaded with llama.cpp: weights, vocabulary, metadata and text <-> token conversion."""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import llama_cpp.llama_cpp as llama

from inferno.core.engines.base import FillInMiddleTokens
from inferno.errors import InfernoError

log = logging.getLogger(__name__)

# ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5.
_FORWARDED_LOG_LEVELS = {3: logging.WARNING, 4: logging.ERROR}


# load_tensors' info line per buffer type, e.g. "CPU_REPACK model buffer size =    60.75 MiB".
_BUFFER_SIZE = re.compile(r"(\S+) model buffer size =\s*([0-9.]+) MiB")
# The buffer sizes of the load running on this thread; llama.cpp logs a load on the thread that loads.
_loading = threading.local()


@dataclass(frozen=True)
class WeightBuffers:
    """Where llama.cpp put a model's weights, by buffer type, as its load log says (its API does not): with
    repacking on, it repacks only the weight types it has repacked kernels for on this CPU (CPU_REPACK)."""

    mib: tuple[tuple[str, float], ...]

    @property
    def repacked_mib(self) -> float:
        return sum(size for name, size in self.mib if "REPACK" in name)

    def describe(self) -> str:
        """For model status's device: "60.8 of 92.1 MiB of weights repacked"."""
        total = sum(size for _, size in self.mib)
        return f"{self.repacked_mib:.1f} of {total:.1f} MiB of weights repacked"


@llama.llama_log_callback
def _forward_llama_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    sizes = getattr(_loading, "buffer_sizes", None)
    if sizes is not None:
        found = _BUFFER_SIZE.search(text.decode(errors="replace"))
        if found:
            sizes.append((found.group(1), float(found.group(2))))
    # llama.cpp is chatty at info level; only warnings and errors reach our log.
    python_level = _FORWARDED_LOG_LEVELS.get(level)
    if python_level is not None:
        log.log(python_level, text.decode(errors="replace").rstrip())


def init_llama_backend() -> None:
    llama.llama_log_set(_forward_llama_log, ctypes.c_void_p(0))
    llama.llama_backend_init()


def end_of_generation_tokens(vocab: llama.llama_vocab_p, n_vocab: int) -> tuple[int, ...]:
    """The tokens llama.cpp ends generation on (EOS, EOT, <|im_end|> and the like), in id order."""
    return tuple(t for t in range(n_vocab) if llama.llama_vocab_is_eog(vocab, t))


class GgufModel:
    """Owns a llama_model. Tokenization is thread-safe in llama.cpp, so any thread may call it."""

    def __init__(
        self, path: Path, on_progress: Callable[[float], None] | None = None, repack: bool = True
    ) -> None:
        """on_progress gets the fraction of the weights read, 0 to 1, on the loading thread. repack: let
        llama.cpp repack weights for its fast CPU kernels (extra buffer types; see cpu_path.py)."""
        if not path.is_file():
            raise InfernoError(
                "model_load_failed", f"model file {path.name} does not exist", {"path": path.name}
            )
        self.path = path
        params = llama.llama_model_default_params()
        params.use_extra_bufts = repack
        if on_progress is not None:

            def report(progress: float, _user_data: ctypes.c_void_p) -> bool:
                on_progress(float(progress))
                return True

            # Kept on params for the duration of the call: ctypes must not free it while llama.cpp calls it.
            callback = llama.llama_progress_callback(report)
            params.progress_callback = callback
        sizes: list[tuple[str, float]] = []
        _loading.buffer_sizes = sizes
        try:
            self.handle = llama.llama_model_load_from_file(str(path).encode(), params)
        finally:
            _loading.buffer_sizes = None
        self.weight_buffers = WeightBuffers(tuple(sizes))
        if not self.handle:
            raise InfernoError(
                "model_load_failed",
                f"llama.cpp could not load {path.name}: not a valid GGUF model",
                {"path": path.name},
            )
        self.vocab = llama.llama_model_get_vocab(self.handle)
        self.n_vocab = int(llama.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(llama.llama_model_n_ctx_train(self.handle))
        self.add_bos = bool(llama.llama_vocab_get_add_bos(self.vocab))
        # Once here (a scan of the vocabulary, 13 ms for SmolLM2's), not per sampled token or per request.
        self.end_of_generation = frozenset(end_of_generation_tokens(self.vocab, self.n_vocab))
        self._piece_cache: dict[int, bytes] = {}

    def metadata(self, key: str) -> str | None:
        size = llama.llama_model_meta_val_str(self.handle, key.encode(), None, 0)
        if size < 0:
            return None
        buffer = ctypes.create_string_buffer(size + 1)
        llama.llama_model_meta_val_str(self.handle, key.encode(), buffer, size + 1)
        return buffer.value.decode(errors="replace")

    def chat_template(self) -> str | None:
        raw = llama.llama_model_chat_template(self.handle, None)
        return raw.decode(errors="replace") if raw else None

    def token_text(self, token: int) -> str:
        """A special token's text (for BOS/EOS in chat templates)."""
        return self.token_bytes(token, special=True).decode(errors="replace") if token >= 0 else ""

    @property
    def bos(self) -> int:
        return int(llama.llama_vocab_bos(self.vocab))

    @property
    def eos(self) -> int:
        return int(llama.llama_vocab_eos(self.vocab))

    def fill_in_middle_tokens(self) -> FillInMiddleTokens | None:
        """llama.cpp's FIM tokens (from the GGUF's metadata or known token texts); None unless all three."""
        ids = (llama.llama_vocab_fim_pre(self.vocab), llama.llama_vocab_fim_suf(self.vocab))
        middle = int(llama.llama_vocab_fim_mid(self.vocab))
        if min(*ids, middle) < 0:
            return None
        return FillInMiddleTokens(int(ids[0]), int(ids[1]), middle)

    def is_end_of_generation(self, token: int) -> bool:
        return token in self.end_of_generation

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        data = text.encode()
        capacity = len(data) + 8
        tokens = (llama.llama_token * capacity)()
        n = llama.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_special, True)
        if n < 0:
            capacity = -n
            tokens = (llama.llama_token * capacity)()
            n = llama.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_special, True)
        return list(tokens[:n])

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        """The raw bytes of one token; control tokens render as nothing unless special."""
        key = token if not special else -token - 1
        cached = self._piece_cache.get(key)
        if cached is not None:
            return cached
        buffer = ctypes.create_string_buffer(64)
        n = llama.llama_token_to_piece(self.vocab, token, buffer, 64, 0, special)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = llama.llama_token_to_piece(self.vocab, token, buffer, -n, 0, special)
        piece = buffer.raw[:n]
        self._piece_cache[key] = piece
        return piece

    def close(self) -> None:
        if self.handle:
            llama.llama_model_free(self.handle)
            self.handle = None
