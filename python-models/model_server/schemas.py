"""Request models (OpenAI-compatible) shared by the HTTP and gRPC front ends.

Validation is strict on types (no "0.5" -> 0.5 coercion) and on ranges; the
gRPC service builds the same models from protobuf messages so both protocols
reject the same inputs with the same messages."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ApiError, from_validation_errors

_STRICT = ConfigDict(extra="ignore", strict=True)
Role = Literal["system", "user", "assistant", "tool", "developer"]
MAX_SEED = 2**63 - 1


class ContentPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: Role
    content: Union[str, list[ContentPart], None] = None
    name: Optional[str] = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool = False


def _float(lo: Optional[float] = None, hi: Optional[float] = None, *, gt: Optional[float] = None):
    return Field(None, ge=lo, le=hi, gt=gt, allow_inf_nan=False)


class ChatCompletionRequest(BaseModel):
    model_config = _STRICT
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: Optional[float] = _float(0.0, 2.0)
    top_p: Optional[float] = _float(None, 1.0, gt=0.0)
    top_k: Optional[int] = Field(None, ge=0)
    min_p: Optional[float] = _float(0.0, 1.0)
    seed: Optional[int] = Field(None, ge=0, le=MAX_SEED)
    presence_penalty: Optional[float] = _float(-2.0, 2.0)
    frequency_penalty: Optional[float] = _float(-2.0, 2.0)
    repetition_penalty: Optional[float] = _float(None, 10.0, gt=0.0)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    stop: Union[str, list[str], None] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[int] = Field(None, ge=1, le=1)
    logit_bias: Optional[dict[str, float]] = None
    ignore_eos: bool = False
    grammar: Optional[str] = None
    json_schema: Optional[dict[str, Any]] = None
    response_format: Optional[dict[str, Any]] = None
    user: Optional[str] = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        if v is None:
            return v
        items = [v] if isinstance(v, str) else v
        if len(items) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        if any(s == "" for s in items):
            raise ValueError("stop sequences must not be empty")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v):
        if v is None:
            return v
        for k, b in v.items():
            if not k.lstrip("-").isdigit() or int(k) < 0:
                raise ValueError(f"logit_bias keys must be token ids, got {k!r}")
            if not -100.0 <= b <= 100.0:
                raise ValueError("logit_bias values must be in [-100, 100]")
        return v

    @model_validator(mode="after")
    def _exclusive(self):
        if self.grammar is not None and (self.json_schema is not None or self.response_format):
            raise ValueError("grammar cannot be combined with json_schema or response_format")
        return self

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class EmbeddingRequest(BaseModel):
    model_config = _STRICT
    model: str = Field(min_length=1)
    input: Union[str, list[str]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(None, ge=1)
    user: Optional[str] = None

    @field_validator("input")
    @classmethod
    def _input(cls, v):
        items = [v] if isinstance(v, str) else v
        if not items:
            raise ValueError("input must not be empty")
        if any(s == "" for s in items):
            raise ValueError("input strings must not be empty")
        return v

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def parse(model: type[BaseModel], data: Any) -> Any:
    """Validate a plain dict into ``model``, raising ApiError (400) on failure."""
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object", "invalid_request_error",
                       "invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_errors(exc.errors(include_url=False)) from None
