"""sessionlayer: the OSI session layer (ISO 8327-1 / ITU-T X.225) over RFC 1006.

This module is the public API: it re-exports names only.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__",
]
