"""The memory plugin (being built)."""

__all__ = ["MemoryPlugin"]


class MemoryPlugin:
    """No hooks yet."""
