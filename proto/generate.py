"""Regenerate the Python code for the wire contract.

    python proto/generate.py          # rewrite proto/anchorlog/v1/*_pb2*.py and .pyi
    python proto/generate.py --check  # exit 1 if the committed code is stale

Needs the `dev` extra (grpcio-tools, pinned so output is reproducible).
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = PROTO_ROOT / "anchorlog" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _include_dirs() -> list[str]:
    """protoc include paths: ours, protobuf's well-known types, google.rpc."""
    import grpc_tools

    dirs = [str(PROTO_ROOT), str(Path(grpc_tools.__file__).parent / "_proto")]
    spec = importlib.util.find_spec("google.rpc.status_pb2")
    if spec is None or spec.origin is None:
        raise SystemExit("googleapis-common-protos is required (google/rpc/status.proto)")
    dirs.append(str(Path(spec.origin).parent.parent.parent))
    return dirs


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc

    protos = sorted(PACKAGE_DIR.glob("*.proto"))
    args = ["grpc_tools.protoc"]
    args += [f"-I{d}" for d in _include_dirs()]
    args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
    args += [str(p.relative_to(PROTO_ROOT)) for p in protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_dir / "anchorlog" / "v1").glob("*_pb2*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [
            f.name for f in fresh
            if not (PACKAGE_DIR / f.name).exists() or not filecmp.cmp(f, PACKAGE_DIR / f.name, shallow=False)
        ]
        if options.check:
            if stale:
                print("stale generated code: " + ", ".join(stale) + " (run python proto/generate.py)")
                return 1
            print("generated code is up to date")
            return 0
        for f in fresh:
            (PACKAGE_DIR / f.name).write_bytes(f.read_bytes())
        print("wrote " + ", ".join(f.name for f in fresh))
    return 0


if __name__ == "__main__":
    sys.exit(main())
