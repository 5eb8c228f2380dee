"""Map failures to precise gRPC statuses with rich details (google.rpc.BadRequest).

No stack trace or secret ever reaches the caller: unknown exceptions become
INTERNAL with a generic message and are logged server-side.
"""

from __future__ import annotations

import logging

import grpc
from anchorlog.ledger.errors import (
    InconsistentLogError,
    InvalidInput,
    NotFound,
    StorageFull,
    StorageUnavailable,
    TamperedStoreError,
    VerificationError,
)
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger("anchorlog.server")


class Denied(Exception):
    """The caller is authenticated but may not do this."""


class Unauthenticated(Exception):
    """No valid credentials."""


class Exhausted(Exception):
    """A limit (size, count, rate, concurrency) was exceeded."""


class AlreadyExists(Exception):
    """The vendor or key to create is already there."""


class Cancelled(Exception):
    """The caller went away (deadline passed or cancelled) before anything was written."""


class FailedPrecondition(Exception):
    """The request is well formed but the current state forbids it; nothing was changed."""


def to_status(exc: BaseException) -> status_pb2.Status:
    """The google.rpc.Status for an exception raised while serving a request."""
    from anchorlog.server.sequencer import KeyNoLongerValid

    if isinstance(exc, InvalidInput):
        return _invalid(exc.field, exc.message, str(exc))
    if isinstance(exc, VerificationError) and not isinstance(exc, InconsistentLogError):
        # Every INVALID_ARGUMENT carries a field violation; here the request as a whole.
        return _invalid("request", str(exc), str(exc))
    simple: list[tuple[type[BaseException], int]] = [
        (Unauthenticated, code_pb2.UNAUTHENTICATED),
        (Denied, code_pb2.PERMISSION_DENIED),
        (KeyNoLongerValid, code_pb2.PERMISSION_DENIED),
        (Exhausted, code_pb2.RESOURCE_EXHAUSTED),
        (AlreadyExists, code_pb2.ALREADY_EXISTS),
        (Cancelled, code_pb2.DEADLINE_EXCEEDED),
        (FailedPrecondition, code_pb2.FAILED_PRECONDITION),
        (NotFound, code_pb2.NOT_FOUND),
        (StorageFull, code_pb2.RESOURCE_EXHAUSTED),
        (StorageUnavailable, code_pb2.UNAVAILABLE),
        (TamperedStoreError, code_pb2.DATA_LOSS),
    ]
    for kind, code in simple:
        if isinstance(exc, kind):
            return status_pb2.Status(code=code, message=str(exc))
    log.exception("internal error", exc_info=exc)
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error (see server log)")


def _invalid(field: str, description: str, message: str) -> status_pb2.Status:
    detail = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=description)]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[packed])


def abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    """Abort the RPC with the status for ``exc`` (raises)."""
    abort_with(context, to_status(exc))


def abort_with(context: grpc.ServicerContext, status: status_pb2.Status) -> None:
    """Abort the RPC with ``status`` (raises)."""
    context.abort_with_status(rpc_status.to_status(status))
