"""The CPU-path probe: a tiny synthetic GGUF whose weights come in every type llama.cpp's CPU backend repacks
(or runs with AMX tiles), and the child process that loads it with the fast path and decodes.

`python -m inferno.core.engines.llamacpp.cpu_probe FOLDER` writes the model into FOLDER, loads it with extra
buffer types on, decodes one batch of PROBE_BATCH_TOKENS tokens (enough to reach the repacked matrix-matrix
kernels) and then one token (the matrix-vector ones), and exits 0. Where the CPU advertises instructions the
machine cannot run, it dies by a signal (SIGILL) instead. cpu_path.py runs it and reads the verdict.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gguf

# Tokens in the probe's batch: llama.cpp's AMX and repacked kernels take over from the plain ones only for
# batches of several rows, so a one-token decode would pass on a machine that dies on the first prompt.
PROBE_BATCH_TOKENS = 32
# Set to "sigill" (tests only), the probe kills itself with SIGILL after loading, before decoding, so the
# fallback runs on machines whose fast path works.
SIMULATE_CRASH_ENV = "INFERNO_CPU_PROBE_SIMULATE"

_EMBED = 256
_FFN = 512
_HEADS = 4
_VOCAB = 256
_CONTEXT = 64
# One weight type per matrix, across two blocks: every type with repacked or AMX kernels in ggml-cpu
# (Q4_0, Q4_1, Q8_0, Q2_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS), then a few without, for their kernels too.
_LAYER_TYPES = (
    ("Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"),
    ("IQ4_NL", "Q2_K", "Q3_K", "Q5_0", "Q5_1", "F16", "Q8_0"),
)
_MATRICES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def write_probe_model(path: Path) -> Path:
    """Writes the probe's GGUF (about 1 MB): a two-block llama with zeroed quantized weights (all-zero blocks
    are valid in every type and keep the arithmetic finite) and no tokenizer."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(_CONTEXT)
    writer.add_embedding_length(_EMBED)
    writer.add_block_count(len(_LAYER_TYPES))
    writer.add_feed_forward_length(_FFN)
    writer.add_head_count(_HEADS)
    writer.add_head_count_kv(_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(_VOCAB)
    writer.add_tokenizer_model("none")
    rng = np.random.default_rng(0)
    writer.add_tensor("token_embd.weight", rng.standard_normal((_VOCAB, _EMBED), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(_EMBED, dtype=np.float32))
    _add_zeroed(writer, "output.weight", "Q6_K", _VOCAB, _EMBED)
    shapes = {"ffn_gate": (_FFN, _EMBED), "ffn_up": (_FFN, _EMBED), "ffn_down": (_EMBED, _FFN)}
    for block, types in enumerate(_LAYER_TYPES):
        writer.add_tensor(f"blk.{block}.attn_norm.weight", np.ones(_EMBED, dtype=np.float32))
        writer.add_tensor(f"blk.{block}.ffn_norm.weight", np.ones(_EMBED, dtype=np.float32))
        for matrix, type_name in zip(_MATRICES, types, strict=True):
            rows, columns = shapes.get(matrix, (_EMBED, _EMBED))
            _add_zeroed(writer, f"blk.{block}.{matrix}.weight", type_name, rows, columns)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_zeroed(writer: gguf.GGUFWriter, name: str, type_name: str, rows: int, columns: int) -> None:
    import gguf
    import numpy as np

    quant = gguf.GGMLQuantizationType[type_name]
    block_size, type_size = gguf.GGML_QUANT_SIZES[quant]
    data = np.zeros((rows, columns // block_size * type_size), dtype=np.uint8)
    writer.add_tensor(name, data, raw_dtype=quant)


def run_probe(model_path: Path) -> int:
    """Loads and decodes with the fast path; returns an exit status (0: it ran). May die by a signal."""
    import llama_cpp.llama_cpp as llama

    # A probe that dies of SIGILL is expected on some machines: leave no core file behind.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    quiet = llama.llama_log_callback(lambda _level, _text, _data: None)
    llama.llama_log_set(quiet, ctypes.c_void_p(0))
    llama.llama_backend_init()
    params = llama.llama_model_default_params()
    params.use_extra_bufts = True
    model = llama.llama_model_load_from_file(str(model_path).encode(), params)
    if not model:
        print(f"cpu probe: llama.cpp could not load {model_path}", file=sys.stderr)
        return 2
    context_params = llama.llama_context_default_params()
    context_params.n_ctx = _CONTEXT
    context_params.n_batch = context_params.n_ubatch = PROBE_BATCH_TOKENS
    # One thread: the kernels are the same, and a busy machine does not slow a one-thread decode as much.
    context_params.n_threads = context_params.n_threads_batch = 1
    context_params.no_perf = True
    context = llama.llama_init_from_model(model, context_params)
    if not context:
        print("cpu probe: llama.cpp could not create a context", file=sys.stderr)
        return 2
    if os.environ.get(SIMULATE_CRASH_ENV) == "sigill":
        os.kill(os.getpid(), signal.SIGILL)
    batch = llama.llama_batch_init(PROBE_BATCH_TOKENS, 0, 1)
    for steps in (range(PROBE_BATCH_TOKENS), range(PROBE_BATCH_TOKENS, PROBE_BATCH_TOKENS + 1)):
        batch.n_tokens = len(steps)
        for i, position in enumerate(steps):
            batch.token[i] = position % _VOCAB
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == len(steps) - 1
        if llama.llama_decode(context, batch) != 0:
            print("cpu probe: llama_decode failed", file=sys.stderr)
            return 3
    llama.llama_batch_free(batch)
    llama.llama_free(context)
    llama.llama_model_free(model)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m inferno.core.engines.llamacpp.cpu_probe FOLDER")
    sys.exit(run_probe(write_probe_model(Path(sys.argv[1]) / "probe.gguf")))
