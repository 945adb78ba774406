"""Fixtures for the MCP tests (the servers themselves are in tests/helpers/mcp_servers.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.helpers.mcp_servers import LoopbackMcp, reap


@pytest.fixture
def mark() -> Iterator[str]:
    """This test's mark for the server processes it starts; any left at the end are killed
    (a test that leaves one fails on its own assertions, not here)."""
    value = uuid.uuid4().hex
    yield value
    reap(value)


@pytest.fixture
async def http_server() -> AsyncIterator[LoopbackMcp]:
    served = LoopbackMcp()
    await served.start()
    try:
        yield served
    finally:
        await served.stop()
