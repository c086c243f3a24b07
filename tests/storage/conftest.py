"""The storage tests' fixtures (defined in support.py with the helpers they share)."""

from tests.storage.support import anyio_backend, database, databases, service

__all__ = ["anyio_backend", "database", "databases", "service"]
