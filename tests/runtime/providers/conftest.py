"""Fixtures of the provider tests: the loopback fake provider, recorded sleeps and events."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fencepost.runtime.providers import ChainEvent, ProviderConfig
from tests.helpers.fake_provider import FakeProviderServer, Raw

#: Stream shapes that compatible servers send, kept as the bytes on the wire.
STREAMS = Path(__file__).parent / "streams"

#: Long enough for loopback, short enough that a hang test takes a fraction of a second.
HANG_TIMEOUT_S = 0.3


class FakeSleep:
    """An injected sleep: records what was asked and yields to the loop, never waits."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


class Events:
    """An on_event callback that keeps what it was sent."""

    def __init__(self) -> None:
        self.items: list[ChainEvent] = []

    async def __call__(self, event: ChainEvent) -> None:
        self.items.append(event)

    def names(self) -> list[str]:
        return [e.name for e in self.items]

    def text(self) -> str:
        return "".join(getattr(e, "text", "") for e in self.items if e.name == "text_delta")


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def events() -> Events:
    return Events()


def openai_config(fake: FakeProviderServer, name: str = "oa", **kw: Any) -> ProviderConfig:
    return ProviderConfig(name, "openai", base_url=fake.openai_base_url, timeout_s=5, **kw)


def anthropic_config(fake: FakeProviderServer, name: str = "an", **kw: Any) -> ProviderConfig:
    return ProviderConfig(name, "anthropic", base_url=fake.anthropic_base_url, timeout_s=5, **kw)


def recorded(name: str) -> Raw:
    """A stream shape from ``streams/``, to be replayed byte for byte by the fake provider."""
    return Raw((STREAMS / name).read_bytes())
