"""The trajectory plugin (being built)."""

__all__ = ["TrajectoryPlugin"]


class TrajectoryPlugin:
    """No hooks yet."""
