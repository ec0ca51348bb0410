"""The committed outputs of proto/ are what the proto and the pinned generators produce today.

On failure, regenerate and commit: `python proto/generate.py` (stubs in inferno/v1/) and
`python envoy/build_descriptor.py` (envoy/inferno.pb).
"""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from types import ModuleType

from google.protobuf import descriptor_pb2, text_format

REPO_ROOT = Path(__file__).resolve().parent.parent
STUBS_DIR = REPO_ROOT / "inferno" / "v1"
DESCRIPTOR_PATH = REPO_ROOT / "envoy" / "inferno.pb"


def _load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _diff(committed: str, regenerated: str, name: str) -> str:
    lines = difflib.unified_diff(
        committed.splitlines(keepends=True),
        regenerated.splitlines(keepends=True),
        fromfile=f"committed/{name}",
        tofile=f"regenerated/{name}",
    )
    return "".join(lines)


def test_committed_stubs_match_regenerated_stubs(tmp_path: Path) -> None:
    _load_script(REPO_ROOT / "proto" / "generate.py").generate(tmp_path)
    fresh = _files(tmp_path / "inferno" / "v1")
    committed = _files(STUBS_DIR)

    problems = [f"missing from inferno/v1/: {name}" for name in sorted(fresh.keys() - committed.keys())]
    problems += [
        f"not generated any more: inferno/v1/{name}" for name in sorted(committed.keys() - fresh.keys())
    ]
    for name in sorted(fresh.keys() & committed.keys()):
        old, new = committed[name].read_text(), fresh[name].read_text()
        if old != new:
            problems.append(_diff(old, new, name))
    assert not problems, "stale stubs; run `python proto/generate.py` and commit:\n" + "\n".join(problems)


def _as_text(descriptor_set: bytes) -> str:
    return text_format.MessageToString(descriptor_pb2.FileDescriptorSet.FromString(descriptor_set))


def test_committed_envoy_descriptor_matches_regenerated_one(tmp_path: Path) -> None:
    fresh_path = tmp_path / "inferno.pb"
    _load_script(REPO_ROOT / "envoy" / "build_descriptor.py").build(fresh_path)
    fresh, committed = fresh_path.read_bytes(), DESCRIPTOR_PATH.read_bytes()
    if fresh != committed:
        diff = _diff(_as_text(committed), _as_text(fresh), "inferno.pb (as text)")
        raise AssertionError(
            "stale envoy/inferno.pb; run `python envoy/build_descriptor.py` and commit:\n"
            + (diff or "same descriptors, different bytes")
        )
