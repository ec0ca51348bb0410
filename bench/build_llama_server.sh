#!/usr/bin/env bash
# Builds llama.cpp's C++ llama-server from the llama.cpp vendored in the pinned llama-cpp-python sdist,
# so the benchmark's peer runs the same kernels as our core. Output: build/llama-server/bin/llama-server.
# Idempotent: a finished build is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml | head -1)
root=build/llama-server
binary=$root/bin/llama-server
if [[ -x $binary && -f $root/VERSION && $(cat "$root/VERSION") == "$version" ]]; then
    echo "$binary"; exit 0
fi
python=${PYTHON:-.venv/bin/python}
mkdir -p "$root/sdist"
"$python" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$root/sdist"
rm -rf "$root/src" && mkdir -p "$root/src"
tar -xzf "$root/sdist/llama_cpp_python-$version.tar.gz" -C "$root/src" --strip-components=1
# GGML_NATIVE matches llama-cpp-python's own default build, so both use the same CPU kernels.
cmake -S "$root/src/vendor/llama.cpp" -B "$root/cmake" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build "$root/cmake" --target llama-server -j "$(nproc)" 2>&1 | grep -E "error|Linking CXX executable" || true
mkdir -p "$root/bin"
cp "$root/cmake/bin/llama-server" "$binary"
echo "$version" > "$root/VERSION"
echo "$binary"
