"""Streamed lookups: signatures checked on several threads (the verdicts stay those of one
thread) and smaller first messages (the answers keep the input order).

Real server subprocess, real client. Envelopes the service would refuse are
written into the database behind its back (as an operator holding the log key
could), so the log proves them included and only their signatures are wrong.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from anchorlog.client import ledger as client_ledger
from anchorlog.client.vendor import VendorKeyPair, attest_samples, hash_text
from anchorlog.client.verify import SignatureError
from anchorlog.ledger.status import Status

from tests.conftest import start_server
from tests.e2e.test_client import VALIDATED, World, _append_behind_the_servers_back, own_world

__all__ = ["own_world"]  # fixture used here

GOOD = 40  # well over PARALLEL_SIGNATURES: one stream message takes the threaded path


def _bad_signature(envelope: bytes) -> bytes:
    doc = json.loads(envelope)
    sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    sig[10] ^= 1
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return json.dumps(doc, separators=(",", ":")).encode()


def append_bad_signatures(world: World, tampered: bytes, foreign: bytes) -> None:
    """Stop the server, append one-sample attestations of ``tampered`` (a signature bit
    flipped) and ``foreign`` (signed by a key never registered) behind its back, restart it."""
    world.server.stop()
    bad_envelope = _bad_signature(attest_samples(world.key, [tampered], VALIDATED).envelope)
    _append_behind_the_servers_back(world.server.data_dir, world.vendor_id, bad_envelope, [tampered])
    stranger = attest_samples(VendorKeyPair.generate(), [foreign], VALIDATED).envelope
    _append_behind_the_servers_back(world.server.data_dir, world.vendor_id, stranger, [foreign])
    world.server = start_server(world.server.data_dir, "--auth-failures-per-minute", "10000")


def test_one_bad_signature_among_many_is_refused_by_the_threaded_check(own_world: World) -> None:
    assert GOOD > client_ledger.PARALLEL_SIGNATURES
    world = own_world
    good = [hash_text(f"threaded check {i}") for i in range(GOOD)]
    tampered, foreign = hash_text("signature bit flipped"), hash_text("signed by a key never registered")
    with world.client(world.vendor_token, "vendor") as vendor:
        outcomes = vendor.submit([attest_samples(world.key, [d], VALIDATED) for d in good])
        assert all(o.ok for o in outcomes)
    append_bad_signatures(world, tampered, foreign)
    try:
        with world.client(world.reader_token, "reader") as reader:
            results = list(reader.provenance_many(good, chunk=GOOD))
            assert [r.digest for r in results] == good
            assert {r.status for r in results} == {Status.HUMAN_VALIDATED}
            assert reader._verifiers is not None, "the threaded check ran"
            for bad in (tampered, foreign):
                with pytest.raises(SignatureError) as single:
                    reader.provenance(bad)
                # The bad one in the middle of many good ones (the threads warm), in one message.
                mixed = [*good[:20], bad, *good[20:]]
                with pytest.raises(SignatureError) as streamed:
                    list(reader.provenance_many(mixed, chunk=len(mixed)))
                assert str(streamed.value) == str(single.value)
                assert "not signed by any key of vendor" in str(streamed.value)
            # Good answers still verify after the refusals.
            again = list(reader.provenance_many(good[::-1], chunk=GOOD))
            assert {r.status for r in again} == {Status.HUMAN_VALIDATED}
    finally:
        world.server.stop()


def test_threaded_check_gives_the_same_results_as_single_lookups(own_world: World) -> None:
    world = own_world
    digests = [hash_text(f"same verdicts {i}") for i in range(GOOD)]
    with world.client(world.vendor_token, "vendor") as vendor:
        assert all(o.ok for o in vendor.submit([attest_samples(world.key, [d], VALIDATED) for d in digests]))
    with world.client(world.reader_token, "reader") as reader:
        streamed = list(reader.provenance_many(digests, chunk=GOOD))
        single = [reader.provenance(d) for d in digests]
    assert [(r.digest, r.status) for r in streamed] == [(r.digest, r.status) for r in single]
    for a, b in zip(streamed, single, strict=True):
        assert [(x.entry.index, x.key_id, x.predicate) for x in a.attestations] == [
            (x.entry.index, x.key_id, x.predicate) for x in b.attestations
        ]


def test_first_and_last_stream_messages_are_smaller_and_answers_keep_the_input_order(own_world: World) -> None:
    world = own_world
    attested = [hash_text(f"ramp {i}") for i in range(30)]
    with world.client(world.vendor_token, "vendor") as vendor:
        assert vendor.submit([attest_samples(world.key, attested, VALIDATED)])[0].ok
    asked = [*attested, *(hash_text(f"never attested {i}") for i in range(7))]
    with world.client(world.reader_token, "reader") as reader:
        sizes: list[int] = []
        real = reader._stub.StreamProvenance

        def counted(requests: Any, **kwargs: Any) -> Any:
            def seen() -> Any:
                for query in requests:
                    sizes.append(len(query.digests))
                    yield query

            return real(seen(), **kwargs)

        reader._stub.StreamProvenance = counted
        results = list(reader.provenance_many(asked, chunk=8))
    # Up to chunk/8, /4, /2; whole chunks while a chunk more is to come; then halves down to chunk/8.
    assert sizes == [1, 2, 4, 8, 8, 7, 3, 2, 1, 1]
    assert [r.digest for r in results] == asked
    assert [r.status for r in results] == [Status.HUMAN_VALIDATED] * 30 + [Status.UNKNOWN] * 7
