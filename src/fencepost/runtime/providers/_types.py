"""Values of the provider layer: model references, configuration, requests and stream events.

Messages are plain dicts in the pi transcript format (DESIGN.md §7, pi-ai): the JSON edge.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias
from urllib.parse import urlsplit

from ...errors import ConfigError, ProviderError

__all__ = [
    "ApiKind",
    "AttemptFailed",
    "ChainEvent",
    "EventCallback",
    "FirstTokenReceived",
    "Message",
    "ModelRef",
    "ModelRequest",
    "ProviderConfig",
    "ProviderEvent",
    "StopReason",
    "TextStreamed",
    "ThinkingLevel",
    "ThinkingStreamed",
    "ToolCallReceived",
    "ToolSpec",
]

#: One pi message: ``user``, ``assistant`` or ``toolResult`` (DESIGN.md §7).
Message: TypeAlias = dict[str, Any]

ApiKind = Literal["openai", "anthropic", "scripted"]
ThinkingLevel = Literal["off", "minimal", "low", "medium", "high", "xhigh"]
StopReason = Literal["stop", "length", "toolUse", "error", "aborted"]

_API_KINDS: frozenset[str] = frozenset({"openai", "anthropic", "scripted"})
_DEFAULT_KEY_ENV: dict[str, str] = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
#: What a local server (Ollama, llama.cpp, vLLM) gets as a key: the SDKs insist on a string.
LOCAL_API_KEY = "not-needed"

#: Slow models answer in minutes; an idle stream for this long is treated as a hang.
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class ModelRef:
    """``provider/model``; the model part may itself contain ``/`` (``openrouter/meta/llama-3``)."""

    provider: str
    model: str

    @classmethod
    def parse(cls, ref: ModelRef | str) -> ModelRef:
        if isinstance(ref, ModelRef):
            return ref
        if not isinstance(ref, str):
            raise ConfigError(f"a model reference is a 'provider/model' string, not {ref!r}")
        provider, sep, model = ref.strip().partition("/")
        if not sep or not provider or not model or provider != provider.strip():
            raise ConfigError(
                f"model reference {ref!r} is not 'provider/model' "
                "(for example 'anthropic/claude-sonnet-4-5' or 'scripted/fast')"
            )
        return cls(provider, model)

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True)
class ProviderConfig:
    """One configured provider. ``api_key_env`` names an environment variable, never a key."""

    name: str
    api: ApiKind
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: Our retries of transient failures (the SDKs' own retries are always off).
    max_retries: int = 2
    #: OpenAI-compatible servers disagree: most take ``max_tokens``, OpenAI's reasoning models
    #: only ``max_completion_tokens``.
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"

    def __post_init__(self) -> None:
        key = f"providers.{self.name}"
        if not self.name or "/" in self.name or self.name != self.name.strip():
            raise ConfigError(f"provider name {self.name!r} must be non-empty without '/'", key=key)
        if self.api not in _API_KINDS:
            kinds = ", ".join(sorted(_API_KINDS))
            raise ConfigError(f"unknown api {self.api!r}; use one of {kinds}", key=f"{key}.api")
        if not self.timeout_s > 0:
            raise ConfigError("timeout_s must be positive", key=f"{key}.timeout_s")
        if self.max_retries < 0:
            raise ConfigError("max_retries must be 0 or more", key=f"{key}.max_retries")

    @property
    def is_local(self) -> bool:
        """A loopback ``base_url`` (a local model server): no API key needed."""
        host = urlsplit(self.base_url).hostname if self.base_url else None
        if host is None:
            return False
        if host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def api_key(self, env: Mapping[str, str] | None = None) -> str:
        """Read the key from the environment now; a clear ConfigError if a remote provider has
        none. A local provider without a key gets a placeholder."""
        env = os.environ if env is None else env
        var = self.api_key_env or _DEFAULT_KEY_ENV.get(self.api)
        value = env.get(var) if var else None
        if value:
            return value
        if self.is_local or self.api == "scripted":
            return LOCAL_API_KEY
        raise ConfigError(
            f"provider {self.name!r} needs an API key: set the environment variable {var} "
            "(or name another one with api_key_env)",
            key=f"providers.{self.name}.api_key_env",
        )


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call; ``parameters`` is a JSON schema object."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclass(frozen=True)
class ModelRequest:
    """One model call: the context as pi messages, oldest first."""

    messages: Sequence[Message]
    system: str = ""
    tools: Sequence[ToolSpec] = ()
    max_tokens: int = 4096
    thinking: ThinkingLevel | None = None
    #: Idle timeout of the HTTP stream; None uses the provider's ``timeout_s``.
    timeout_s: float | None = None
    #: Which conversation this call continues (the runner passes the session id). Not sent to
    #: the remote APIs; the scripted model keeps one step cursor per conversation with it.
    conversation: str | None = None
    #: ``summary``: a compaction summary request (not a turn). The scripted model answers it
    #: with a deterministic summary instead of playing a script step.
    purpose: Literal["turn", "summary"] = "turn"

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")


# ---- events: what a call streams while it runs ---------------------------------------------


@dataclass(frozen=True)
class FirstTokenReceived:
    name: ClassVar[str] = "first_token"
    elapsed_s: float


@dataclass(frozen=True)
class TextStreamed:
    name: ClassVar[str] = "text_delta"
    text: str


@dataclass(frozen=True)
class ThinkingStreamed:
    name: ClassVar[str] = "thinking_delta"
    text: str


@dataclass(frozen=True)
class ToolCallReceived:
    """A complete tool call (arguments parsed); sent once its last fragment has arrived."""

    name: ClassVar[str] = "tool_call"
    id: str
    tool_name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class AttemptFailed:
    """A call failed; anything streamed since the last AttemptFailed belongs to a dead attempt.
    ``retry_in_s`` is None when the chain moves to the next model (or gives up)."""

    name: ClassVar[str] = "attempt_failed"
    model: ModelRef
    attempt: int
    error: ProviderError
    retry_in_s: float | None


ProviderEvent: TypeAlias = FirstTokenReceived | TextStreamed | ThinkingStreamed | ToolCallReceived
ChainEvent: TypeAlias = ProviderEvent | AttemptFailed
EventCallback: TypeAlias = Callable[[ChainEvent], Awaitable[None]]
