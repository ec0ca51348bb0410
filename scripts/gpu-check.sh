#!/usr/bin/env bash
# The GPU check: on a CUDA machine with PyTorch and no internet, ExLlamaV2 against transformers on the embedded
# SmolLM2-135M, in one run of at most 9 minutes (GPU_CHECK_BUDGET_S):
#   (a) the GGUF exported to an FP16 Hugging Face folder; 32 greedy tokens in ExLlamaV2 (Inferno's engine and the
#       library) equal transformers' greedy tokens on that folder            tests/gpu/test_exllamav2_greedy.py
#   (b) `inferno core --model FOLDER` passes the gRPC contract suite         tests/contract
#   (d) aggregate tok/s at 1, 8, 32 streams against transformers' generate  bench/gpu_throughput.py
#   (c) EXL2 at 6.0 bpw keeps FP16's greedy choice on >= 85% of 64 positions tests/gpu/test_exl2_agreement.py
# Everything it writes goes under $OUT (./gpu-out when unset): gpu-check.log, gpu-results.md/.json,
# gpu-throughput.md/.json and core.log.
#
# scripts/gpu-prepare.sh (run first, here) makes .whl, .gpu-a and .gpu-b. One device call carries at most
# 64 MiB, so the check takes two calls back to back (the machine stays warm about 30 s between them):
#   call 1, carry [".whl", ".gpu-a"]:  bash scripts/gpu-check.sh stash
#       keeps part a and the wheels in /root/stash, installs the wheels, builds exllamav2's extension for this
#       GPU only (cached for call 2) and checks the imports;
#   call 2, carry [".gpu-b"]:          bash scripts/gpu-check.sh
#       joins the GGUF (sha256 checked) and runs (a), (b), (d), (c).
#   Here, on CPU:                      bash scripts/gpu-check.sh dry-run
#       the same plumbing with the local venv: export, the GPU tests (skipped), a llama.cpp core on the GGUF for
#       the contract suite and the throughput client, transformers on CPU with tiny sizes.
#
# Functions run through `bash -c` under timeout and from the EXIT trap look unreachable to shellcheck:
# shellcheck disable=SC2317
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/gpu-common.sh
source scripts/gpu-common.sh

MODE="${1:-run}"
case "$MODE" in
stash | run | dry-run) ;;
*)
    echo "usage: $0 [stash|run|dry-run]" >&2
    exit 2
    ;;
esac

OUT="${OUT:-$ROOT/gpu-out}"
WORK="${GPU_WORK:-/tmp/gpu-work}"
SITE="${GPU_SITE:-/tmp/site}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-540}"
START=$SECONDS
mkdir -p "$OUT" "$WORK"
STAGES="$WORK/stages.tsv"
: >"$STAGES"
exec > >(tee -a "$OUT/gpu-check.log") 2>&1
TEE_PID=$!
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

if [[ "$MODE" == dry-run ]]; then
    PY="${PYTHON:-$ROOT/.venv/bin/python}"
    SITE="$WORK/site"
else
    PY="${PYTHON:-python3}"
fi
CORE_PID=""
FAILED=0

say() { printf '[%(%H:%M:%S)T +%3ds] %s\n' -1 $((SECONDS - START)) "$*"; }

# record NAME STATUS SECONDS DETAIL: one row of the results table.
record() {
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4//$'\t'/ }" >>"$STAGES"
    say "stage $1: $2 (${3}s) $4"
    [[ "$2" == passed || "$2" == skipped ]] || FAILED=1
}

# stage NAME CAP_S COMMAND...: runs COMMAND under a timeout of CAP_S or what is left of the budget.
stage() {
    local name="$1" cap="$2"
    shift 2
    local left=$((BUDGET_S - (SECONDS - START)))
    if ((left < 20)); then
        record "$name" skipped 0 "the ${BUDGET_S}s budget is spent"
        return 1
    fi
    local limit=$((cap < left ? cap : left)) began=$SECONDS rc=0
    say "stage $name: start (at most ${limit}s)"
    # A child bash runs the (exported) function; timeout stops its whole process group. The last line it
    # prints (pytest's summary, say) becomes the stage's detail.
    set +e
    timeout --kill-after=10 "$limit" bash -c 'set -euo pipefail; "$@"' "$name" "$@" 2>&1 | tee "$WORK/stage.out"
    rc="${PIPESTATUS[0]}"
    set -e
    local last
    last="$(grep -v '^[[:space:]]*$' "$WORK/stage.out" | tail -n 1 | tr -d '=' | cut -c1-120 |
        sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' || true)"
    if ((rc == 0)); then
        record "$name" passed $((SECONDS - began)) "$last"
    elif ((rc == 124 || rc == 137)); then
        record "$name" "timed out" $((SECONDS - began)) "after ${limit}s"
    else
        record "$name" failed $((SECONDS - began)) "exit status $rc: $last"
    fi
    return "$rc"
}

# inline_stage NAME COMMAND...: a stage that sets variables here (the command keeps to the budget itself).
inline_stage() {
    local name="$1" began=$SECONDS rc=0
    shift
    if ((BUDGET_S - (SECONDS - START) < 20)); then
        record "$name" skipped 0 "the ${BUDGET_S}s budget is spent"
        return 1
    fi
    say "stage $name: start"
    "$@" || rc=$?
    if ((rc == 0)); then
        record "$name" passed $((SECONDS - began)) ""
    else
        record "$name" failed $((SECONDS - began)) "exit status $rc"
    fi
    return "$rc"
}

stop_core() {
    [[ -n "$CORE_PID" ]] || return 0
    say "stopping the core (pid $CORE_PID)"
    kill -TERM "$CORE_PID" 2>/dev/null || true
    for _ in $(seq 40); do
        kill -0 "$CORE_PID" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL "$CORE_PID" 2>/dev/null || true
    wait "$CORE_PID" 2>/dev/null || true
    CORE_PID=""
}

finish() {
    local rc=$?
    stop_core
    if [[ -f "$WORK/core.log" ]]; then
        tail -n 3000 "$WORK/core.log" >"$OUT/core.log"
    fi
    "$PY" - "$STAGES" "$OUT" "$MODE" $((SECONDS - START)) <<'PY' || true
import json
import platform
import sys
from pathlib import Path

stages_file, out, mode, seconds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rows = [line.split("\t") for line in stages_file.read_text().splitlines() if line]
try:
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    versions = f"torch {torch.__version__} (CUDA {torch.version.cuda})"
except ImportError:
    gpu, versions = "no torch", ""
lines = [
    f"## GPU check ({mode}) on {gpu}",
    "",
    f"{versions}, Python {platform.python_version()}, {seconds}s in all.",
    "",
    "| stage | result | seconds | detail |",
    "|---|---|---:|---|",
    *(f"| {name} | {status} | {secs} | {detail.replace('|', '/')} |" for name, status, secs, detail in rows),
]
throughput = out / "gpu-throughput.md"
if throughput.is_file():
    lines += ["", throughput.read_text().rstrip()]
(out / "gpu-results.md").write_text("\n".join(lines) + "\n")
results = {
    "mode": mode,
    "gpu": gpu,
    "versions": versions,
    "seconds": seconds,
    "stages": [
        {"stage": name, "result": status, "seconds": int(secs), "detail": detail}
        for name, status, secs, detail in rows
    ],
}
(out / "gpu-results.json").write_text(json.dumps(results, indent=2) + "\n")
print("\n".join(lines))
PY
    say "exit status $rc; files in $OUT: $(cd "$OUT" && echo *)"
    exec >&- 2>&-
    wait "$TEE_PID" 2>/dev/null || true
    exit "$rc"
}
trap finish EXIT

# --- environment ------------------------------------------------------------------------------------------------

wheel_source() {
    if compgen -G "$ROOT/$WHEEL_DIR/*.whl" >/dev/null; then
        echo "$ROOT/$WHEEL_DIR"
    elif compgen -G "$STASH_DIR/wheels/*.whl" >/dev/null; then
        echo "$STASH_DIR/wheels"
    fi
}

install_wheels() {
    local from
    from="$(wheel_source)"
    if [[ -z "$from" ]]; then
        echo "no wheels: neither $ROOT/$WHEEL_DIR nor $STASH_DIR/wheels (call 1, 'stash', carries them)" >&2
        return 1
    fi
    local listing
    listing="$(find "$from" -type f -name '*.whl' -printf '%f\n' | sort | sha256sum | cut -c1-16)"
    if [[ -f "$SITE/.installed" && "$(cat "$SITE/.installed")" == "$listing" ]]; then
        say "wheels already installed in $SITE"
        return 0
    fi
    say "installing $(find "$from" -type f -name '*.whl' | wc -l) wheels from $from into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$from"/*.whl
    echo "$listing" >"$SITE/.installed"
}

setup_environment() {
    if [[ "$MODE" == dry-run ]]; then
        export PYTHONPATH="$ROOT"
    else
        export PYTHONPATH="$SITE:$ROOT"
    fi
    PATH="$(dirname "$("$PY" -c 'import sys; print(sys.executable)')"):$PATH"
    export PATH MAX_JOBS="${MAX_JOBS:-16}" TORCH_EXTENSIONS_DIR="$STASH_DIR/torch_extensions"
    # The toolkit holding nvcc and its headers (`nvcc` on the PATH may be a wrapper script elsewhere).
    if [[ -z "${CUDA_HOME:-}" ]]; then
        local candidate nvcc_path
        nvcc_path="$(command -v nvcc || true)"
        for candidate in /usr/local/cuda /usr/local/cuda-* \
            ${nvcc_path:+"$(dirname "$(dirname "$(readlink -f "$nvcc_path")")")"}; do
            if [[ -x "$candidate/bin/nvcc" && -f "$candidate/include/cuda_runtime.h" ]]; then
                export CUDA_HOME="$candidate"
                break
            fi
        done
    fi
    # Build for this GPU only (compute capability from torch), not for every architecture torch knows.
    local arch
    arch="$("$PY" -c 'import torch; c = torch.cuda.get_device_capability() if torch.cuda.is_available() else None
print(f"{c[0]}.{c[1]}" if c else "")' || true)"
    if [[ -n "$arch" ]]; then
        export TORCH_CUDA_ARCH_LIST="$arch"
    fi
    # exllamav2 includes curand_kernel.h and cuBLAS headers; if the toolkit lacks them, PyTorch's own CUDA
    # wheels have them.
    if [[ -n "${CUDA_HOME:-}" && ! -f "$CUDA_HOME/include/curand_kernel.h" ]]; then
        local extra
        extra="$("$PY" - <<'PY'
import sysconfig
from pathlib import Path

root = Path(sysconfig.get_paths()["purelib"]) / "nvidia"
print(":".join(sorted({str(p.parent) for n in ("curand_kernel.h", "cublas_v2.h") for p in root.rglob(n)})))
PY
)"
        [[ -z "$extra" ]] || export CPATH="$extra${CPATH:+:$CPATH}"
    fi
    say "python $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    say "PYTHONPATH=$PYTHONPATH TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-} CUDA_HOME=${CUDA_HOME:-}" \
        "MAX_JOBS=$MAX_JOBS CPATH=${CPATH:-}"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    fi
    if command -v nvcc >/dev/null; then
        nvcc --version | tail -2 || true
    fi
}

# Our package runs from the tree: inferno/__init__.py maps inferno.core to core/ and inferno.adapters to
# adapters/, as setuptools' package-dir does in the wheel. The GPU path must not need llama-cpp-python: dry-run
# hides it as the GPU machine (which lacks it) would.
check_imports() {
    "$PY" - "$ROOT" "$MODE" <<'PY'
import importlib
import importlib.metadata
import sys
from pathlib import Path

root, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "dry-run":
    for name in ("llama_cpp", "llama_cpp.llama_cpp", "llama_cpp.llama_grammar"):
        sys.modules[name] = None  # type: ignore[assignment]
import inferno.core

where = Path(inferno.core.__file__).resolve()
assert where == root / "core" / "__init__.py", f"inferno.core comes from {where}"
for name in ("grpcio", "protobuf", "exllamav2", "transformers", "torch"):
    try:
        print(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        print(f"{name} not installed")
failed = []
for module in ("inferno.cli", "inferno.core.convert.export_hf", "inferno.core.convert.exl2", "inferno.core.server"):
    try:
        importlib.import_module(module)
    except Exception as error:  # every failing module is named, not only the first
        failed.append(f"{module}: {type(error).__name__}: {error}")
if failed:
    sys.exit("imports on the GPU path fail (llama-cpp-python is not there):\n  " + "\n  ".join(failed))
print("GPU-path imports ok")
PY
}

build_extension() {
    # A build stopped by a timeout leaves its lock behind, and the next import would wait on it for ever;
    # the object files it finished stay and ninja goes on from them.
    find "$TORCH_EXTENSIONS_DIR" -maxdepth 2 -name lock -delete 2>/dev/null || true
    "$PY" -c 'import time; t = time.monotonic(); from exllamav2 import ext
print(f"exllamav2_ext ready in {time.monotonic() - t:.1f}s: {ext.ext_c.__file__}")'
}

# --- the model ------------------------------------------------------------------------------------------------

part_file() { # part_file a|b: where that part of the GGUF is, or nothing
    local here="$ROOT/$PART_A_DIR/gguf.part" stashed="$STASH_DIR/part-a/gguf.part"
    if [[ "$1" == b ]]; then
        here="$ROOT/$PART_B_DIR/gguf.part" stashed="$STASH_DIR/part-b/gguf.part"
    fi
    if [[ -f "$here" ]]; then echo "$here"; elif [[ -f "$stashed" ]]; then echo "$stashed"; fi
}

join_gguf() {
    local a b
    a="$(part_file a)"
    b="$(part_file b)"
    if [[ -z "$a" ]]; then
        echo "part a of the GGUF is missing: neither $ROOT/$PART_A_DIR nor $STASH_DIR/part-a." >&2
        echo "Run call 1 (carry .whl and .gpu-a: 'bash scripts/gpu-check.sh stash') right before this one;" >&2
        echo "the machine was given back in between, or call 1 never ran." >&2
        return 3
    fi
    if [[ -z "$b" ]]; then
        echo "part b of the GGUF is missing: carry .gpu-b (made by scripts/gpu-prepare.sh)" >&2
        return 3
    fi
    GGUF="$SITE/$GGUF_RELPATH"
    mkdir -p "$(dirname "$GGUF")"
    cat "$a" "$b" >"$GGUF"
    local actual
    actual="$(sha256sum "$GGUF" | cut -d' ' -f1)"
    if [[ "$actual" != "$GGUF_SHA256" ]]; then
        echo "the joined GGUF has sha256 $actual, not $GGUF_SHA256 ($a + $b)" >&2
        return 3
    fi
    # A dist-info beside it, so that inferno.core.embedded finds the embedded model as if pip had put it there.
    local info="$SITE/${GGUF_DIST//-/_}-$GGUF_DIST_VERSION.dist-info"
    mkdir -p "$info"
    printf 'Metadata-Version: 2.1\nName: %s\nVersion: %s\n' "$GGUF_DIST" "$GGUF_DIST_VERSION" >"$info/METADATA"
    export GGUF INFERNO_GPU_GGUF="$GGUF"
    say "GGUF joined and checked: $GGUF"
}

export_folder() {
    rm -rf "$HF_DIR"
    "$PY" -m inferno.core.convert.export_hf "$GGUF" "$HF_DIR"
}

# --- the core -------------------------------------------------------------------------------------------------

start_core() {
    local model="$1"
    CORE_PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    say "starting inferno core on 127.0.0.1:$CORE_PORT with $model"
    INFERNO_DATA_DIR="$WORK/data" "$PY" -m inferno.cli core --host 127.0.0.1 --grpc-port "$CORE_PORT" \
        --model "$model" --parallel 32 --ctx-size 2048 >"$WORK/core.log" 2>&1 &
    CORE_PID=$!
    local left=$((BUDGET_S - (SECONDS - START)))
    MODEL_ID="$("$PY" -m tests.gpu.core_ready "127.0.0.1:$CORE_PORT" --timeout $((left < 170 ? left : 170)) \
        --pid "$CORE_PID")" || {
        tail -n 40 "$WORK/core.log"
        return 1
    }
    export CORE_PORT MODEL_ID
    say "core serving model '$MODEL_ID'"
}

pytest_gpu() { # pytest_gpu FILE...: the GPU tests without the suite's root conftest (it needs more packages)
    "$PY" -m pytest -q -rA -p no:cacheprovider --confcutdir="$ROOT/tests/gpu" "$@"
}

# The suite's gRPC half (its HTTP half needs a gateway), for the engine that serves the model.
contract_suite() {
    local suite="$ROOT/tests/contract/test_grpc_contract.py" engine=exllamav2
    [[ "$MODE" == run ]] || engine="llama.cpp"
    if [[ ! -f "$suite" ]]; then
        echo "$suite is not there" >&2
        return 1
    fi
    "$PY" -m pytest -q -rA -p no:cacheprovider --confcutdir="$ROOT/tests/contract" "$suite" \
        --core-address "127.0.0.1:$CORE_PORT" --model-id "$MODEL_ID" --engine "$engine"
}

throughput() {
    local sizes=(--core-label "Inferno core (ExLlamaV2)")
    if [[ "$MODE" == dry-run ]]; then
        sizes=(--core-label "Inferno core (llama.cpp)" --device cpu --dtype float32 --streams "1,2"
            --max-tokens 8 --repeats 1)
    fi
    "$PY" bench/gpu_throughput.py --core "127.0.0.1:$CORE_PORT" --model-id "$MODEL_ID" --model-dir "$HF_DIR" \
        --json "$OUT/gpu-throughput.json" --markdown "$OUT/gpu-throughput.md" "${sizes[@]}"
}

# --- the run --------------------------------------------------------------------------------------------------

export ROOT OUT WORK SITE MODE PY START STASH_DIR WHEEL_DIR
# On the GPU machine the GPU tests fail rather than skip when torch sees no CUDA device.
[[ "$MODE" == dry-run ]] || export INFERNO_GPU_REQUIRED=1
export -f say wheel_source install_wheels check_imports build_extension export_folder pytest_gpu contract_suite \
    throughput

if [[ "$MODE" == stash ]]; then
    say "call 1: keeping part a and the wheels in $STASH_DIR"
    [[ -f "$ROOT/$PART_A_DIR/gguf.part" ]] || { echo "carry $PART_A_DIR in this call" >&2; exit 3; }
    mkdir -p "$STASH_DIR/part-a" "$STASH_DIR/wheels"
    cp "$ROOT/$PART_A_DIR"/* "$STASH_DIR/part-a/"
    cp "$ROOT/$WHEEL_DIR"/*.whl "$STASH_DIR/wheels/"
    stage install 120 install_wheels || exit 1
    setup_environment
    stage imports 60 check_imports || true
    stage build "$BUDGET_S" build_extension || true
    exit "$FAILED"
fi

say "mode $MODE, budget ${BUDGET_S}s, output in $OUT"
join_gguf
if [[ "$MODE" == run ]]; then
    stage install 120 install_wheels || exit 1
fi
setup_environment
HF_DIR="$WORK/smollm2-hf"
EXL2_DIR="$WORK/smollm2-exl2-6.0bpw"
export HF_DIR INFERNO_GPU_HF_DIR="$HF_DIR" INFERNO_GPU_EXL2_DIR="$EXL2_DIR"
rm -rf "$EXL2_DIR"
stage imports 60 check_imports || true
if [[ "$MODE" == run ]]; then
    stage build "$BUDGET_S" build_extension || exit 1
fi
stage export 180 export_folder || exit 1

stage "a: greedy tokens" 240 pytest_gpu tests/gpu/test_exllamav2_greedy.py || true
# The core serves the FP16 folder with the ExLlamaV2 engine; dry-run serves the GGUF with llama.cpp instead.
core_model="$HF_DIR"
[[ "$MODE" == run ]] || core_model="$GGUF"
if inline_stage "core start" start_core "$core_model"; then
    stage "b: contract suite" 180 contract_suite || true
    stage "d: throughput" 240 throughput || true
else
    record "b: contract suite" skipped 0 "the core did not start"
    record "d: throughput" skipped 0 "the core did not start"
fi
stop_core
stage "c: exl2 agreement" 360 pytest_gpu tests/gpu/test_exl2_agreement.py || true
exit "$FAILED"
