"""Token revocation end to end: a real server, the real client, a restart in between.

A revoked token must fail authentication on every RPC (the list comes from the
proto descriptor), the other tokens must keep working, revocation must survive a
restart, and the log must never be left without a live admin token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from anchorlog.client.ledger import LedgerClient, LedgerRpcError, token_id_of
from anchorlog.v1 import anchorlog_pb2 as pb
from anchorlog.v1 import anchorlog_pb2_grpc as pb_grpc

from tests.conftest import ServerProcess, start_server
from tests.e2e.support import RPC_NAMES, World, attest, auth, connect, fresh_digests, populate

_SERVICE = pb.DESCRIPTOR.services_by_name["Ledger"]


def _admin_client(server: ServerProcess, token: str, tmp: Path) -> LedgerClient:
    return LedgerClient(server.address, token=token, log_key=server.log_key,
                        state_path=tmp / "admin-state.json")


def _unauthenticated_everywhere(stub: pb_grpc.LedgerStub, token: str) -> None:
    """Every RPC refuses ``token`` before looking at the (empty) request."""
    for name in RPC_NAMES:
        method = _SERVICE.methods_by_name[name]
        request_class = getattr(pb, method.input_type.name)
        request = request_class()
        call = getattr(stub, name)
        with pytest.raises(grpc.RpcError) as raised:
            answer = call(iter([request]) if method.client_streaming else request, metadata=auth(token))
            if method.server_streaming:
                list(answer)
        assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED, (name, raised.value)
        assert raised.value.details() == "unknown or revoked token", name


def _role_of(stub: pb_grpc.LedgerStub, token: str) -> tuple[str, int]:
    answer = stub.WhoAmI(pb.WhoAmIRequest(), metadata=auth(token))
    return answer.principal, answer.role


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    server = start_server(tmp_path / "data", "--auth-failures-per-minute", "100000")
    w: World | None = None
    try:
        w = populate(server)
        yield w
        w.channel.close()
    finally:
        # A test that restarts the server puts the new process in world.server.
        (w.server if w is not None else server).stop()


def test_revoke_by_id_and_principal_then_restart(world: World, tmp_path: Path) -> None:
    server = world.server
    with _admin_client(server, server.admin_token, tmp_path) as admin:
        issued = admin.issue_token_with_id("acme", "vendor")
        assert issued.token_id == hashlib.sha256(issued.token.encode()).hexdigest()[:16]
        # The new vendor token works: it submits as acme.
        response = world.stub.Submit(
            pb.SubmitRequest(items=[attest(world.keys["acme"], fresh_digests("tokens", 2))]),
            metadata=auth(issued.token))
        assert response.results[0].WhichOneof("outcome") == "receipt", response
        readers = [admin.issue_token_with_id("builder-9", "reader") for _ in range(2)]
        by_value = admin.issue_token("audit-9", "auditor")

        assert admin.revoke_token(token_id=issued.token_id) == [issued.token_id]
        assert admin.revoke_token(principal="builder-9") == sorted(r.token_id for r in readers)
        assert admin.revoke_token(token=by_value) == [token_id_of(by_value)]

        # A second revocation finds nothing live, and says which id it looked for.
        with pytest.raises(LedgerRpcError) as again:
            admin.revoke_token(token_id=issued.token_id)
        assert again.value.code == "NOT_FOUND" and issued.token_id in again.value.message

    revoked = [issued.token, *(r.token for r in readers), by_value]
    for token in revoked:
        _unauthenticated_everywhere(world.stub, token)
    # Everyone else is untouched, including acme's first token.
    assert _role_of(world.stub, world.tokens["acme"]) == ("acme", pb.ROLE_VENDOR)
    assert _role_of(world.stub, world.tokens["reader"]) == ("builder-1", pb.ROLE_READER)
    assert _role_of(world.stub, world.tokens["auditor"]) == ("audit-1", pb.ROLE_AUDITOR)
    world.submit_ok("acme", attest(world.keys["acme"], fresh_digests("tokens-still", 1)))

    # The server logged ids, never a token.
    log_text = server.log()
    assert issued.token_id in log_text
    assert all(token not in log_text for token in [*revoked, *world.tokens.values()])

    assert server.stop() == 0
    restarted = start_server(server.data_dir, "--auth-failures-per-minute", "100000")
    world.server = restarted
    with connect(restarted.address) as channel:
        stub = pb_grpc.LedgerStub(channel)
        for token in revoked:
            _unauthenticated_everywhere(stub, token)
        assert _role_of(stub, world.tokens["acme"]) == ("acme", pb.ROLE_VENDOR)
        assert _role_of(stub, restarted.admin_token) == ("admin", pb.ROLE_ADMIN)


def test_last_admin_token_cannot_be_revoked(world: World, tmp_path: Path) -> None:
    server = world.server
    first = server.admin_token
    with _admin_client(server, first, tmp_path) as admin:
        for attempt in ({"token_id": token_id_of(first)}, {"token": first}, {"principal": "admin"}):
            with pytest.raises(LedgerRpcError) as refused:
                admin.revoke_token(**attempt)
            assert refused.value.code == "FAILED_PRECONDITION", attempt
            assert "last live admin token" in refused.value.message
        assert _role_of(world.stub, first) == ("admin", pb.ROLE_ADMIN)
        second = admin.issue_token_with_id("ops", "admin")
        # With another admin token live, the first one can go (even by the caller itself).
        assert admin.revoke_token(token_id=token_id_of(first)) == [token_id_of(first)]
    _unauthenticated_everywhere(world.stub, first)
    with _admin_client(server, second.token, tmp_path) as ops:
        with pytest.raises(LedgerRpcError) as refused:
            ops.revoke_token(principal="ops")
        assert refused.value.code == "FAILED_PRECONDITION"
        # Revoking non-admin tokens is still fine.
        assert ops.revoke_token(principal="builder-1") == [token_id_of(world.tokens["reader"])]
    assert _role_of(world.stub, second.token) == ("ops", pb.ROLE_ADMIN)
