"""OTLP/HTTP bodies in and out: protobuf or JSON, gzip, and the Status message errors are answered with.

The schema is opentelemetry-proto's generated code; OTLP's JSON differs from the protobuf JSON mapping only in
trace and span ids (hex, not base64), which are converted before parsing.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, status_pb2

from optiinfra.errors import OptiInfraError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# A gzip body may expand to at most this many bytes (the compressed body is limited by the server's body limit).
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})

M = TypeVar("M", bound=Message)


class OtlpBodyError(OptiInfraError):
    """A body that cannot be read: answered 400 with a Status message, and not retried by exporters."""

    status_code = 400
    code = "bad_request"


class UnsupportedMediaTypeError(OptiInfraError):
    status_code = 415
    code = "unsupported_media_type"


@dataclass(frozen=True)
class Encoding:
    media_type: str

    @property
    def is_json(self) -> bool:
        return self.media_type == JSON


def encoding_of(content_type: str | None) -> Encoding:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in (PROTOBUF, JSON):
        return Encoding(media_type)
    raise UnsupportedMediaTypeError(
        f"Content-Type must be {PROTOBUF} or {JSON}, not {media_type or 'missing'}.",
        details={"content_type": media_type},
    )


def decompress(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise UnsupportedMediaTypeError(f"Content-Encoding must be gzip or absent, not {encoding}.")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_DECOMPRESSED_BYTES + 1)
    except zlib.error as error:
        raise OtlpBodyError(f"The gzip body cannot be decompressed: {error}.") from None
    if len(data) > MAX_DECOMPRESSED_BYTES or inflater.unconsumed_tail:
        raise OtlpBodyError(f"The body decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes.")
    if not inflater.eof:
        raise OtlpBodyError("The gzip body is truncated.")
    return data


def _hex_ids_to_base64(value: Any) -> Any:
    """OTLP/JSON writes ids as hex; the protobuf JSON mapping reads bytes as base64."""
    if isinstance(value, dict):
        converted = {}
        for key, item in value.items():
            if key in _ID_FIELDS and isinstance(item, str):
                try:
                    converted[key] = base64.b64encode(bytes.fromhex(item)).decode()
                except ValueError:
                    raise OtlpBodyError(f"{key} {item[:64]!r} is not a hex id.") from None
            else:
                converted[key] = _hex_ids_to_base64(item)
        return converted
    if isinstance(value, list):
        return [_hex_ids_to_base64(item) for item in value]
    return value


def parse(message_type: type[M], body: bytes, encoding: Encoding) -> M:
    """The request message, or OtlpBodyError saying why the body is not one."""
    message = message_type()
    if encoding.is_json:
        try:
            raw = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError as error:
            raise OtlpBodyError(f"The body is not valid JSON: {error}.") from None
        if not isinstance(raw, dict):
            raise OtlpBodyError("The JSON body must be an object.")
        try:
            json_format.ParseDict(_hex_ids_to_base64(raw), message, ignore_unknown_fields=True)
        except (json_format.ParseError, RecursionError) as error:
            raise OtlpBodyError(f"The body is not an OTLP {message_type.__name__}: {error}"[:1000]) from None
        return message
    try:
        message.ParseFromString(body)
    except (DecodeError, RecursionError) as error:
        raise OtlpBodyError(f"The body is not a protobuf {message_type.__name__}: {error}"[:1000]) from None
    return message


def serialize(message: Message, encoding: Encoding) -> bytes:
    if encoding.is_json:
        return orjson.dumps(json_format.MessageToDict(message))
    return message.SerializeToString()


_RPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND,
    409: code_pb2.ABORTED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    422: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


def rpc_code(http_status: int) -> int:
    """The google.rpc.Code of an error answered with this HTTP status (OTLP/HTTP's Status body, OTLP/gRPC's status)."""
    return int(_RPC_CODES.get(http_status, code_pb2.INTERNAL))


def status_body(http_status: int, message: str, encoding: Encoding) -> bytes:
    """The google.rpc.Status an OTLP/HTTP error response carries."""
    status = status_pb2.Status(code=rpc_code(http_status), message=message)
    return serialize(status, encoding)
