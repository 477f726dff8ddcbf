"""One error type for both front ends: OpenAI-shaped JSON over HTTP, a
matching status code over gRPC."""

from __future__ import annotations

from typing import Any, Optional

import grpc

_GRPC_BY_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: Optional[str] = None,
        param: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    @property
    def grpc_code(self) -> grpc.StatusCode:
        if self.status >= 500 and self.status not in _GRPC_BY_HTTP:
            return grpc.StatusCode.INTERNAL
        return _GRPC_BY_HTTP.get(self.status, grpc.StatusCode.INVALID_ARGUMENT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid(message: str, param: Optional[str] = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def model_not_found(model: str) -> ApiError:
    return ApiError(404, f"The model '{model}' does not exist", "invalid_request_error",
                    "model_not_found", "model")


def from_validation_errors(errors: list[dict[str, Any]]) -> ApiError:
    """Map pydantic / FastAPI validation errors to one 400 ApiError."""
    if not errors:
        return invalid("Invalid request")
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body",)]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value")
    if first.get("type") == "json_invalid":
        return invalid(f"Request body is not valid JSON: {msg}", None, "invalid_json")
    text = f"Invalid value for '{param}': {msg}" if param else f"Invalid request: {msg}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more error(s))"
    code = "missing_required_parameter" if first.get("type") == "missing" else "invalid_value"
    return invalid(text, param, code)


def from_llama_error(err: dict[str, Any]) -> ApiError:
    """Map an error object returned by llama.cpp's server code."""
    status = int(err.get("code") or 500)
    etype = str(err.get("type") or "")
    message = str(err.get("message") or "generation failed")
    if etype == "exceed_context_size_error":
        return ApiError(400, message, "invalid_request_error", "context_length_exceeded", "messages")
    if status < 500:
        return ApiError(status, message, "invalid_request_error", etype or None)
    if status == 503:
        return ApiError(503, message, "server_unavailable", etype or None)
    return ApiError(500, message, "server_error", etype or None)
