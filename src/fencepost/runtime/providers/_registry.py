"""Providers by name, built lazily from configuration; ``scripted`` is always there."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

from ...errors import ConfigError
from ._base import Provider
from ._retry import RetryPolicy
from ._scripted import Script, ScriptedProvider
from ._types import ModelRef, ProviderConfig

__all__ = ["SCRIPTED", "ProviderRegistry", "RegistryStatistics", "make_provider"]

#: The built-in provider's name: ``scripted/<script>`` works with no configuration at all.
SCRIPTED = "scripted"

Sleep = Callable[[float], Awaitable[None]]


def make_provider(
    config: ProviderConfig,
    *,
    env: Mapping[str, str] | None = None,
    scripts: Mapping[str, Script] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> Provider:
    """Build one provider; the API key is read from ``env`` now (ConfigError if missing).
    The SDK modules are imported here, on first use (they are slow to import)."""
    if config.api == "openai":
        from ._openai import OpenAIProvider

        return OpenAIProvider(config, env=env)
    if config.api == "anthropic":
        from ._anthropic import AnthropicProvider

        return AnthropicProvider(config, env=env)
    return ScriptedProvider(scripts, name=config.name, sleep=sleep)


@dataclass(frozen=True)
class RegistryStatistics:
    configured: tuple[str, ...]
    built: tuple[str, ...]


class ProviderRegistry:
    """Owns the providers it builds: close it (``async with``) to close their HTTP clients."""

    def __init__(
        self,
        configs: Iterable[ProviderConfig] | Mapping[str, ProviderConfig] = (),
        *,
        scripts: Mapping[str, Script] | None = None,
        env: Mapping[str, str] | None = None,
        sleep: Sleep = asyncio.sleep,
        providers: Mapping[str, Provider] | None = None,
    ) -> None:
        items = configs.values() if isinstance(configs, Mapping) else configs
        self._configs: dict[str, ProviderConfig] = {}
        for c in items:
            if c.name in self._configs:
                raise ConfigError(
                    f"provider {c.name!r} is configured twice", key=f"providers.{c.name}"
                )
            if c.name == SCRIPTED and c.api != "scripted":
                raise ConfigError(
                    "the provider name 'scripted' is reserved for the built-in scripted model",
                    key=f"providers.{c.name}",
                )
            self._configs[c.name] = c
        self._scripts = dict(scripts or {})
        self._env = env
        self._sleep = sleep
        self._given: dict[str, Provider] = dict(providers or {})
        self._built: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        """The provider called ``name``, built on first use."""
        found = self._given.get(name) or self._built.get(name)
        if found is not None:
            return found
        config = self._configs.get(name)
        if config is None and name != SCRIPTED:
            known = ", ".join(sorted({*self._configs, *self._given, SCRIPTED}))
            raise ConfigError(f"unknown provider {name!r}; known providers: {known}", key=name)
        config = config or ProviderConfig(SCRIPTED, "scripted")
        provider = make_provider(config, env=self._env, scripts=self._scripts, sleep=self._sleep)
        self._built[name] = provider
        return provider

    def check(self, ref: ModelRef | str) -> ModelRef:
        """Refuse a reference that cannot work, when it is given (DESIGN.md §6): unknown
        provider, missing API key, unknown script. Builds the provider; makes no request."""
        parsed = ModelRef.parse(ref)
        provider = self.get(parsed.provider)
        if isinstance(provider, ScriptedProvider) and parsed.model not in provider.scripts:
            known = ", ".join(sorted(provider.scripts))
            raise ConfigError(f"no script named {parsed.model!r}; known: {known}", key=str(ref))
        return parsed

    def retry_policy(self, name: str) -> RetryPolicy:
        config = self._configs.get(name)
        return RetryPolicy(max_attempts=config.max_retries + 1) if config else RetryPolicy()

    async def aclose(self) -> None:
        built, self._built = self._built, {}
        for provider in built.values():
            await provider.aclose()

    async def __aenter__(self) -> ProviderRegistry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def statistics(self) -> RegistryStatistics:
        return RegistryStatistics(
            configured=tuple(sorted({*self._configs, *self._given, SCRIPTED})),
            built=tuple(sorted(self._built)),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<ProviderRegistry configured={list(s.configured)} built={list(s.built)}>"
