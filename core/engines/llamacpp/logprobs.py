"""Log-probabilities of sampled tokens from llama.cpp's raw logits (the model's own distribution)."""

from __future__ import annotations

import ctypes

import llama_cpp.llama_cpp as llama
import numpy as np

from inferno.core.engines.base import TokenLogprobs
from inferno.errors import InfernoError

# The engine thread reads logits for every sampled token, between two decodes, where each microsecond is one
# the decode waits for: so through PyDLL, which keeps the GIL for a call that only returns a pointer (a CDLL
# call lets go of it and may wait to win it back from the event loop), returning a plain address.
_get_logits_ith = ctypes.PyDLL(llama._lib._name, handle=llama._lib._handle).llama_get_logits_ith
_get_logits_ith.argtypes = (llama.llama_context_p_ctypes, ctypes.c_int32)
_get_logits_ith.restype = ctypes.c_void_p

# Arrays over the addresses llama.cpp has returned: its output buffer stays put from step to step, and
# numpy.ctypeslib.as_array costs some 30 us a call here (its Python runs with caches the decode emptied).
# An array does not own its memory; one is only read just after llama.cpp returned its address as valid.
_views: dict[tuple[int, int], np.ndarray] = {}
_MOST_VIEWS = 4096


def logits_at(ctx: llama.llama_context_p, batch_index: int, n_vocab: int) -> np.ndarray:
    """The logits of the batch's token at batch_index, in place (valid until the next decode)."""
    address = _get_logits_ith(ctx, batch_index)
    if not address:
        raise InfernoError("internal_error", f"llama.cpp has no logits for batch index {batch_index}")
    key = (address, n_vocab)
    view = _views.get(key)
    if view is None:
        if len(_views) >= _MOST_VIEWS:
            _views.clear()
        floats = (ctypes.c_float * n_vocab).from_address(address)
        view = _views[key] = np.frombuffer(memoryview(floats), np.float32)
    return view


def token_logprobs(
    ctx: llama.llama_context_p, batch_index: int, n_vocab: int, token: int, top_n: int
) -> TokenLogprobs:
    """log softmax of the logits at batch_index, read for token and the top_n most likely tokens."""
    logits = logits_at(ctx, batch_index, n_vocab)
    peak = float(logits.max())
    log_total = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))
    top: tuple[tuple[int, float], ...] = ()
    if top_n > 0:
        candidates = np.argpartition(-logits, top_n)[:top_n]
        ranked = candidates[np.argsort(-logits[candidates], kind="stable")]
        top = tuple((int(t), float(logits[t]) - log_total) for t in ranked)
    return TokenLogprobs(token, float(logits[token]) - log_total, top)
