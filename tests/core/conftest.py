"""Fixtures shared by the core tests."""

from __future__ import annotations

import pytest

from fencepost import SessionStore


@pytest.fixture
def store(tmp_path):
    """A buffered store on ``tmp_path`` (test files that need another one define their own)."""
    s = SessionStore(tmp_path, durability="buffered")
    yield s
    s.close()
