"""Generate the Python stubs for proto/inferno/v1 into inferno/v1 (or another root).

Run: python proto/generate.py [OUT_ROOT]. Needs the pinned grpcio-tools and mypy-protobuf (the `test` extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent


def _include_dirs() -> list[str]:
    import google.api.annotations_pb2 as annotations
    import grpc_tools

    google_apis = Path(annotations.__file__).resolve().parent.parent.parent
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    return [str(PROTO_ROOT), str(google_apis), str(well_known)]


def generate(out_root: Path) -> None:
    """Write *_pb2.py, *_pb2_grpc.py and their .pyi stubs under out_root/inferno/v1."""
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "inferno" / "v1").glob("*.proto"))
    out = str(out_root)
    bin_dir = Path(sys.executable).parent
    args = ["protoc", *(f"-I{d}" for d in _include_dirs())]
    args += [f"--plugin=protoc-gen-{name}={bin_dir / f'protoc-gen-{name}'}" for name in ("mypy", "mypy_grpc")]
    args += [f"--python_out={out}", f"--grpc_python_out={out}", f"--mypy_out={out}", f"--mypy_grpc_out={out}"]
    code = protoc.main([*args, *sources])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    package = out_root / "inferno" / "v1"
    (package / "__init__.py").write_text('"""Generated gRPC stubs for the inferno.v1 API. Do not edit."""\n')
    (package / "py.typed").write_text("")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT)
