"""Undecodable request bytes get INVALID_ARGUMENT, not gRPC's default INTERNAL.

grpcio answers a request whose protobuf bytes do not parse with INTERNAL
("Exception deserializing request!"), which reads as a server fault. This
interceptor swaps each method's deserializer for one that never raises and
turns a parse failure into a precise INVALID_ARGUMENT: at once for unary
requests, and for streamed requests as an ``InvalidInput`` raised from the
request iterator, which the servicer maps like any other bad input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from anchorlog.ledger.errors import InvalidInput


@dataclass(frozen=True)
class _Undecodable:
    reason: str


def _safe(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's input
            return _Undecodable(f"request is not a valid protobuf message ({type(exc).__name__})")

    return parse


def _checked_stream(requests: Iterator[Any]) -> Iterator[Any]:
    for position, request in enumerate(requests):
        if isinstance(request, _Undecodable):
            raise InvalidInput(f"request[{position}]", request.reason)
        yield request


def _unary(behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        return behavior(request, context)

    return handle


def _streaming(behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return behavior(_checked_stream(requests), context)

    return handle


class RejectUndecodable(grpc.ServerInterceptor):
    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        changes: dict[str, Any] = {"request_deserializer": _safe(handler.request_deserializer)}
        for name in ("unary_unary", "unary_stream"):
            if getattr(handler, name) is not None:
                changes[name] = _unary(getattr(handler, name))
        for name in ("stream_unary", "stream_stream"):
            if getattr(handler, name) is not None:
                changes[name] = _streaming(getattr(handler, name))
        return handler._replace(**changes)  # type: ignore[attr-defined]
