"""Model providers: ``provider/model`` references, streaming calls, retries, fallback chains.

See docs/design/providers.md. The public API is what ``__all__`` lists. The SDK-backed
providers (``OpenAIProvider``, ``AnthropicProvider``) are imported on first use: the SDKs take
about a second to import, which a CLI that only runs ``scripted/...`` should not pay.
"""

from typing import TYPE_CHECKING

from ...errors import ProviderError, ProviderErrorKind
from ._base import Provider
from ._chain import Completion, FailedAttempt, complete, context_messages, stream_complete
from ._classify import classify_error, classify_exception_type, parse_retry_after_s
from ._registry import SCRIPTED, ProviderRegistry, RegistryStatistics, make_provider
from ._retry import RetryPolicy, call_with_retries, retry_delay_s
from ._scripted import (
    BUILTIN_SCRIPTS,
    Script,
    ScriptedProvider,
    ScriptedStatistics,
    ScriptedToolCall,
    ScriptStep,
    load_script,
    parse_script,
)
from ._types import (
    ApiKind,
    AttemptFailed,
    ChainEvent,
    EventCallback,
    FirstTokenReceived,
    Message,
    ModelRef,
    ModelRequest,
    ProviderConfig,
    ProviderEvent,
    StopReason,
    TextStreamed,
    ThinkingLevel,
    ThinkingStreamed,
    ToolCallReceived,
    ToolSpec,
)

if TYPE_CHECKING:
    from ._anthropic import AnthropicProvider
    from ._openai import OpenAIProvider

__all__ = [
    "BUILTIN_SCRIPTS",
    "SCRIPTED",
    "AnthropicProvider",
    "ApiKind",
    "AttemptFailed",
    "ChainEvent",
    "Completion",
    "EventCallback",
    "FailedAttempt",
    "FirstTokenReceived",
    "Message",
    "ModelRef",
    "ModelRequest",
    "OpenAIProvider",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "ProviderErrorKind",
    "ProviderEvent",
    "ProviderRegistry",
    "RegistryStatistics",
    "RetryPolicy",
    "Script",
    "ScriptStep",
    "ScriptedProvider",
    "ScriptedStatistics",
    "ScriptedToolCall",
    "StopReason",
    "TextStreamed",
    "ThinkingLevel",
    "ThinkingStreamed",
    "ToolCallReceived",
    "ToolSpec",
    "call_with_retries",
    "classify_error",
    "classify_exception_type",
    "complete",
    "context_messages",
    "load_script",
    "make_provider",
    "parse_retry_after_s",
    "parse_script",
    "retry_delay_s",
    "stream_complete",
]


def __getattr__(name: str) -> object:
    if name == "OpenAIProvider":
        from ._openai import OpenAIProvider

        return OpenAIProvider
    if name == "AnthropicProvider":
        from ._anthropic import AnthropicProvider

        return AnthropicProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
