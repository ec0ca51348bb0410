"""Write envoy/inferno.pb, the descriptor set Envoy's grpc_json_transcoder reads.

Run: python envoy/build_descriptor.py [OUT_FILE] after any change under proto/, and commit the result
(tests/test_proto_stubs.py fails while it is stale). Needs grpcio-tools (the `test` extra).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from grpc_tools import protoc

ENVOY_DIR = Path(__file__).resolve().parent
REPO_ROOT = ENVOY_DIR.parent
PROTO_ROOT = REPO_ROOT / "proto"
DESCRIPTOR_PATH = ENVOY_DIR / "inferno.pb"

# With convert_grpc_status the transcoder renders grpc-status-details-bin as JSON, which needs the types of
# google.rpc.Status and of its details (our errors carry a google.rpc.ErrorInfo) in the descriptor set.
_STATUS_PROTOS = ("google/rpc/status.proto", "google/rpc/error_details.proto")


def _include_dirs() -> list[str]:
    # The same include path as the stub generator, so both compile the same files.
    spec = importlib.util.spec_from_file_location("_proto_generate", PROTO_ROOT / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    return list(generate._include_dirs())


def build(out_file: Path) -> None:
    """Write a FileDescriptorSet of the inferno.v1 protos and everything they import to out_file."""
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "inferno" / "v1").glob("*.proto"))
    args = ["protoc", *(f"-I{d}" for d in _include_dirs())]
    args += ["--include_imports", f"--descriptor_set_out={out_file}"]
    code = protoc.main([*args, *sources, *_STATUS_PROTOS])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else DESCRIPTOR_PATH)
