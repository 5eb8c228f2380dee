"""The full RPC x role matrix against a real server, through the generated stubs.

The RPC list comes from the proto descriptor: a new RPC without a case here makes
these tests fail, so no RPC can ship without its permission check being tested.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from anchorlog.v1 import anchorlog_pb2 as pb

from tests.conftest import start_server
from tests.e2e.support import (
    RPC_NAMES,
    Key,
    World,
    attest,
    attest_batch,
    auth,
    envelope,
    failure_of_item,
    fresh_digests,
    populate,
    predicate,
    revoke,
    statement,
    subject,
)

ADMIN = frozenset({"admin"})
VENDOR = frozenset({"vendor"})
READERS = frozenset({"admin", "vendor", "reader", "auditor"})
AUDITORS = frozenset({"admin", "auditor"})

# What the issue asks, written out independently of the server's own table.
EXPECTED: dict[str, frozenset[str]] = {
    "Submit": VENDOR,
    "SubmitStream": VENDOR,
    "GetProvenance": READERS,
    "StreamProvenance": READERS,
    "GetCheckpoint": READERS,
    "GetConsistencyProof": READERS,
    "GetInclusionProof": READERS,
    "GetEntries": AUDITORS,
    "GetBatchDigests": AUDITORS,
    "GetKeyHistory": AUDITORS,
    "CreateVendor": ADMIN,
    "RegisterKey": ADMIN,
    "RotateKey": ADMIN,
    "RevokeKey": ADMIN,
    "IssueToken": ADMIN,
    "RevokeToken": ADMIN,
    "WhoAmI": READERS,
}
CALLERS = ("admin", "vendor", "reader", "auditor", "no-token", "bad-token")
_ROLE_PB = {"admin": pb.ROLE_ADMIN, "vendor": pb.ROLE_VENDOR, "reader": pb.ROLE_READER,
            "auditor": pb.ROLE_AUDITOR}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = start_server(Path(tmp_path_factory.mktemp("roles")) / "data",
                          "--auth-failures-per-minute", "100000")
    try:
        w = populate(server)
        (batch,) = w.submit_ok("vendor", attest_batch(w.keys["vendor"], fresh_digests("roles", 8)))
        w.indices["batch"] = batch.entry.entry.index
        yield w
        w.channel.close()
    finally:
        server.stop()


_counter = itertools.count()


def _fresh_name(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


def _registered_key(w: World) -> str:
    """Register a new key for acme (as admin) and return its ID."""
    key = Key.generate()
    w.stub.RegisterKey(pb.RegisterKeyRequest(vendor_id="acme", public_key=key.public), metadata=w.admin)
    return key.key_id


Call = Callable[[list[tuple[str, str]]], object]


def _call_for(rpc: str, w: World) -> Call:
    """A call of ``rpc`` whose request is valid, so only the caller's role decides."""
    s = w.stub
    size, _ = w.head()
    if rpc == "Submit":
        item = attest(w.keys["vendor"], fresh_digests("matrix", 2))
        return lambda md: s.Submit(pb.SubmitRequest(items=[item]), metadata=md)
    if rpc == "SubmitStream":
        item = attest(w.keys["vendor"], fresh_digests("matrix-stream", 2))
        return lambda md: list(s.SubmitStream(iter([pb.SubmitRequest(items=[item])]), metadata=md))
    if rpc == "GetProvenance":
        return lambda md: s.GetProvenance(pb.GetProvenanceRequest(digest=b"\x01" * 32), metadata=md)
    if rpc == "StreamProvenance":
        query = pb.ProvenanceQuery(digests=[b"\x02" * 32], trusted_size=1)
        return lambda md: list(s.StreamProvenance(iter([query]), metadata=md))
    if rpc == "GetCheckpoint":
        return lambda md: s.GetCheckpoint(pb.GetCheckpointRequest(trusted_size=1), metadata=md)
    if rpc == "GetConsistencyProof":
        request = pb.GetConsistencyProofRequest(first_size=1, second_size=size)
        return lambda md: s.GetConsistencyProof(request, metadata=md)
    if rpc == "GetInclusionProof":
        return lambda md: s.GetInclusionProof(pb.GetInclusionProofRequest(index=0), metadata=md)
    if rpc == "GetEntries":
        return lambda md: s.GetEntries(pb.GetEntriesRequest(start=0, end=3), metadata=md)
    if rpc == "GetBatchDigests":
        request = pb.GetBatchDigestsRequest(entry_index=w.indices["batch"])
        return lambda md: s.GetBatchDigests(request, metadata=md)
    if rpc == "GetKeyHistory":
        return lambda md: s.GetKeyHistory(pb.GetKeyHistoryRequest(vendor_id="acme"), metadata=md)
    if rpc == "CreateVendor":
        request = pb.CreateVendorRequest(vendor_id=_fresh_name("vendor"), display_name="V")
        return lambda md: s.CreateVendor(request, metadata=md)
    if rpc == "RegisterKey":
        request = pb.RegisterKeyRequest(vendor_id="acme", public_key=Key.generate().public)
        return lambda md: s.RegisterKey(request, metadata=md)
    if rpc == "RotateKey":
        rotate = pb.RotateKeyRequest(vendor_id="acme", old_key_id=_registered_key(w),
                                     new_public_key=Key.generate().public)
        return lambda md: s.RotateKey(rotate, metadata=md)
    if rpc == "RevokeKey":
        request = pb.RevokeKeyRequest(vendor_id="acme", key_id=_registered_key(w), reason="matrix")
        return lambda md: s.RevokeKey(request, metadata=md)
    if rpc == "IssueToken":
        request = pb.IssueTokenRequest(principal=_fresh_name("reader"), role=pb.ROLE_READER)
        return lambda md: s.IssueToken(request, metadata=md)
    if rpc == "RevokeToken":
        victim = s.IssueToken(pb.IssueTokenRequest(principal=_fresh_name("reader"), role=pb.ROLE_READER),
                              metadata=w.admin)
        request = pb.RevokeTokenRequest(token_id=victim.token_id)
        return lambda md: s.RevokeToken(request, metadata=md)
    if rpc == "WhoAmI":
        return lambda md: s.WhoAmI(pb.WhoAmIRequest(), metadata=md)
    pytest.fail(f"RPC {rpc} has no case in test_roles.py: add one (and its row in EXPECTED)")


def _metadata(w: World, caller: str) -> list[tuple[str, str]]:
    if caller == "no-token":
        return []
    if caller == "bad-token":
        return auth("alt_" + "A" * 43)
    return w.md(caller)


def test_expected_table_covers_exactly_the_service() -> None:
    assert set(EXPECTED) == set(RPC_NAMES)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("rpc", RPC_NAMES)
def test_rpc_role_matrix(world: World, rpc: str, caller: str) -> None:
    if rpc not in EXPECTED:
        pytest.fail(f"RPC {rpc} has no row in EXPECTED: decide which roles may call it")
    call = _call_for(rpc, world)
    before = world.head()
    if caller in EXPECTED[rpc]:
        answer = call(_metadata(world, caller))
        if rpc == "Submit":
            assert isinstance(answer, pb.SubmitResponse)
            assert answer.results[0].WhichOneof("outcome") == "receipt", answer
        if rpc == "SubmitStream":
            assert isinstance(answer, list) and answer[0].results[0].WhichOneof("outcome") == "receipt", answer
        if rpc == "WhoAmI":
            assert isinstance(answer, pb.WhoAmIResponse) and answer.role == _ROLE_PB[caller]
        if rpc == "RevokeToken":
            assert isinstance(answer, pb.RevokeTokenResponse) and len(answer.token_ids) == 1, answer
        return
    with pytest.raises(grpc.RpcError) as raised:
        call(_metadata(world, caller))
    error = raised.value
    if caller == "no-token":
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "missing authorization" in error.details()
    elif caller == "bad-token":
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "token" in error.details()
    else:
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, error
        assert f"may not call {rpc}" in error.details()
    assert world.head() == before, "a refused call changed the log"


def test_whoami_names_the_principal(world: World) -> None:
    answer = world.stub.WhoAmI(pb.WhoAmIRequest(), metadata=world.md("globex"))
    assert (answer.principal, answer.role) == ("globex", pb.ROLE_VENDOR)


def test_vendor_cannot_submit_with_another_vendors_key(world: World) -> None:
    """acme's token with globex's key: refused however the keyid hint is spelled."""
    before = world.head()
    globex = world.keys["globex"]
    payload = statement([subject(d) for d in fresh_digests("foreign", 2)], predicate())
    honest_hint = pb.SubmitItem(envelope=envelope(payload, globex))
    forged_hint = pb.SubmitItem(envelope=envelope(payload, globex, keyid=world.keys["acme"].key_id))
    no_hint = pb.SubmitItem(envelope=envelope(payload, globex, keyid=""))
    response = world.stub.Submit(pb.SubmitRequest(items=[honest_hint, forged_hint, no_hint]),
                                 metadata=world.md("acme"))
    first, second, third = (failure_of_item(r) for r in response.results)
    assert first.code is grpc.StatusCode.PERMISSION_DENIED
    assert globex.key_id in first.message and "not registered to vendor 'acme'" in first.message
    for other in (second, third):
        assert other.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "no signature verifies with a key registered to vendor 'acme'" in other.message
    streamed = list(world.stub.SubmitStream(iter([pb.SubmitRequest(items=[honest_hint])]), metadata=world.md("acme")))
    assert failure_of_item(streamed[0].results[0]).code is grpc.StatusCode.PERMISSION_DENIED
    assert world.head() == before
    # The same envelope is fine from its owner.
    (receipt,) = world.submit_ok("globex", honest_hint)
    assert not receipt.duplicate


def test_vendor_cannot_revoke_another_vendors_entry(world: World) -> None:
    (receipt,) = world.submit_ok("acme", attest(world.keys["acme"], fresh_digests("victim", 1)))
    before = world.head()
    target = (receipt.entry.entry.index, _leaf(receipt))
    response = world.stub.Submit(pb.SubmitRequest(items=[revoke(world.keys["globex"], [target])]),
                                 metadata=world.md("globex"))
    failure = failure_of_item(response.results[0])
    assert failure.code is grpc.StatusCode.PERMISSION_DENIED
    assert "submitted by another vendor" in failure.message
    assert world.head() == before


def _leaf(receipt: pb.Receipt) -> bytes:
    from anchorlog.ledger.merkle import leaf_hash

    return leaf_hash(receipt.entry.entry.data)
