"""fencepost: a self-hosted agent gateway whose session transcripts many writers share safely.

The public API is what ``__all__`` lists; everything in a ``_private`` module may change.
"""

from .core import *  # noqa: F403  (re-exported deliberately; see fencepost.core.__all__)
from .core import __all__ as _core_all
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all

__version__ = "0.1.0"

__all__ = [*_core_all, *_errors_all, "__version__"]
