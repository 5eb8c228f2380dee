"""The wire contract: generated code is fresh, and the service offers every RPC issue 2 asks for."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "proto"
PROTO_FILE = "anchorlog/v1/anchorlog.proto"
GENERATED = ("anchorlog_pb2.py", "anchorlog_pb2.pyi", "anchorlog_pb2_grpc.py")

F = descriptor_pb2.FieldDescriptorProto


def _run_check(generate: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(generate), "--check"], capture_output=True, text=True, check=False,
        timeout=120,
    )


def _load_generate_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("anchorlog_proto_generate", PROTO_ROOT / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- staleness ---------------------------------------------------------------------------


def test_committed_generated_code_is_up_to_date() -> None:
    result = _run_check(PROTO_ROOT / "generate.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "generated code is up to date" in result.stdout


@pytest.fixture
def proto_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "proto"
    shutil.copytree(PROTO_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_check_fails_when_generated_code_was_edited(proto_copy: Path) -> None:
    target = proto_copy / "anchorlog" / "v1" / "anchorlog_pb2_grpc.py"
    target.write_text(target.read_text() + "\n# hand edit\n")
    before = {name: (proto_copy / "anchorlog" / "v1" / name).read_bytes() for name in GENERATED}
    result = _run_check(proto_copy / "generate.py")
    assert result.returncode == 1
    assert "stale generated code: anchorlog_pb2_grpc.py" in result.stdout
    after = {name: (proto_copy / "anchorlog" / "v1" / name).read_bytes() for name in GENERATED}
    assert after == before, "--check must not write anything"


def test_check_fails_when_the_proto_changed(proto_copy: Path) -> None:
    proto = proto_copy / "anchorlog" / "v1" / "anchorlog.proto"
    proto.write_text(proto.read_text() + "\nmessage AddedLater {\n  string note = 1;\n}\n")
    result = _run_check(proto_copy / "generate.py")
    assert result.returncode == 1
    assert "anchorlog_pb2.py" in result.stdout and "anchorlog_pb2.pyi" in result.stdout


def test_check_fails_when_a_generated_file_is_missing(proto_copy: Path) -> None:
    (proto_copy / "anchorlog" / "v1" / "anchorlog_pb2.pyi").unlink()
    result = _run_check(proto_copy / "generate.py")
    assert result.returncode == 1
    assert "anchorlog_pb2.pyi" in result.stdout


# --- the service, read from the .proto itself -------------------------------------------------


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    """Compile the .proto (not the committed code) into descriptors."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("descriptors") / "anchorlog.desc"
    includes = [f"-I{d}" for d in _load_generate_script()._include_dirs()]
    assert protoc.main(["protoc", *includes, f"--descriptor_set_out={out}", PROTO_FILE]) == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _file(contract: descriptor_pb2.FileDescriptorSet) -> descriptor_pb2.FileDescriptorProto:
    (found,) = [f for f in contract.file if f.name == PROTO_FILE]
    return found


def _methods(contract: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.MethodDescriptorProto]:
    (service,) = _file(contract).service
    return {m.name: m for m in service.method}


def _fields(contract: descriptor_pb2.FileDescriptorSet, type_name: str) -> dict[str, F]:
    name = type_name.rsplit(".", 1)[-1]
    (message,) = [m for m in _file(contract).message_type if m.name == name]
    return {f.name: f for f in message.field}


def test_service_has_every_rpc_of_issue_2(contract: descriptor_pb2.FileDescriptorSet) -> None:
    methods = _methods(contract)
    required = {
        "Submit",  # attestations in batches
        "SubmitStream",  # and as a client stream
        "GetProvenance",  # one digest
        "StreamProvenance",  # millions of digests
        "GetCheckpoint",  # latest checkpoint
        "GetConsistencyProof",
        "GetInclusionProof",
        "GetEntries",  # by range
        "RegisterKey",
        "RotateKey",
        "RevokeKey",
        "WhoAmI",
    }
    assert required <= set(methods), f"missing RPCs: {sorted(required - set(methods))}"
    assert _file(contract).package == "anchorlog.v1"


def test_rpc_shapes_match_the_issue(contract: descriptor_pb2.FileDescriptorSet) -> None:
    m = _methods(contract)
    unary = [name for name in ("Submit", "GetProvenance", "GetCheckpoint", "GetConsistencyProof",
                               "GetInclusionProof", "GetEntries", "RegisterKey", "RotateKey",
                               "RevokeKey", "WhoAmI")
             if m[name].client_streaming or m[name].server_streaming]
    assert unary == []
    assert m["SubmitStream"].client_streaming
    assert m["StreamProvenance"].server_streaming  # bidirectional or server stream
    assert m["StreamProvenance"].client_streaming or m["StreamProvenance"].server_streaming

    # Submit takes a batch and answers with a receipt per item.
    items = _fields(contract, m["Submit"].input_type)["items"]
    assert items.label == F.LABEL_REPEATED and items.type == F.TYPE_MESSAGE
    results = _fields(contract, m["Submit"].output_type)["results"]
    assert results.label == F.LABEL_REPEATED
    assert "receipt" in _fields(contract, results.type_name)
    assert {"entry", "checkpoint"} <= set(_fields(contract, ".anchorlog.v1.Receipt"))

    # Submit streams carry many items per message and many results per answer (one
    # gRPC message per window, not per envelope); the trusted size rides on the message.
    assert m["SubmitStream"].server_streaming
    stream_in = _fields(contract, m["SubmitStream"].input_type)
    assert stream_in["items"].label == F.LABEL_REPEATED and stream_in["trusted_size"].type == F.TYPE_UINT64
    assert _fields(contract, m["SubmitStream"].output_type)["results"].label == F.LABEL_REPEATED
    assert "consistency" in _fields(contract, ".anchorlog.v1.ItemResult")
    assert "trusted_size" not in _fields(contract, ".anchorlog.v1.SubmitItem")

    # Streams of digests carry many digests per message.
    digests = _fields(contract, m["StreamProvenance"].input_type)["digests"]
    assert digests.label == F.LABEL_REPEATED and digests.type == F.TYPE_BYTES

    consistency = _fields(contract, m["GetConsistencyProof"].input_type)
    assert consistency["first_size"].type == consistency["second_size"].type == F.TYPE_UINT64
    proof = _fields(contract, m["GetConsistencyProof"].output_type)["hashes"]
    assert proof.label == F.LABEL_REPEATED and proof.type == F.TYPE_BYTES

    assert _fields(contract, m["GetInclusionProof"].input_type)["index"].type == F.TYPE_UINT64
    entries = _fields(contract, m["GetEntries"].input_type)
    assert entries["start"].type == entries["end"].type == F.TYPE_UINT64
    assert _fields(contract, m["GetEntries"].output_type)["entries"].label == F.LABEL_REPEATED

    assert "public_key" in _fields(contract, m["RegisterKey"].input_type)
    assert {"old_key_id", "new_public_key"} <= set(_fields(contract, m["RotateKey"].input_type))
    assert {"key_id", "compromised"} <= set(_fields(contract, m["RevokeKey"].input_type))


def test_generated_service_matches_the_proto(contract: descriptor_pb2.FileDescriptorSet) -> None:
    from anchorlog.v1 import anchorlog_pb2, anchorlog_pb2_grpc

    service = anchorlog_pb2.DESCRIPTOR.services_by_name["Ledger"]
    assert {m.name for m in service.methods} == set(_methods(contract))
    stub_methods = {name for name in vars(anchorlog_pb2_grpc.LedgerServicer) if not name.startswith("_")}
    assert stub_methods == set(_methods(contract))
