"""What the app holds while it runs, in one typed place, and the one lifespan that opens and closes it.

`create_app()` (app.py) builds a `Runtime`; routes reach it through the typed dependencies of
`protocol/dependencies.py`, never through untyped `app.state` attributes. Resources that need
closing (HTTP clients, the replay cache, the database) are closed at shutdown in the reverse order
of opening, by one `AsyncExitStack`: issued cards still queued are written first, the database is
closed last.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from cds_service.protocol.connections import install_loop_error_filter
from cds_service.protocol.service import ServiceRegistry
from cds_service.services.card_memory import CardMemory
from cds_service.settings import Settings
from cds_service.storage.db import Storage, open_storage
from cds_service.storage.settings import StorageSettings

if TYPE_CHECKING:
    from cds_service.security.jwt_auth import ClientAuthenticator
    from cds_service.security.replay import ReplayCache
    from cds_service.security.settings import AuthSettings

Closer = Callable[[], Awaitable[object]]
SHUTDOWN_FLUSH_SECONDS = 5.0


@dataclass
class Runtime:
    """The app's settings, services and open resources. `storage` is set while the app runs."""

    settings: Settings
    registry: ServiceRegistry
    card_memory: CardMemory
    storage_settings: StorageSettings | None = None  # None: read from the environment at start-up
    storage: Storage | None = None
    client_auth_settings: AuthSettings | None = None  # set by security.install_client_auth
    client_authenticator: ClientAuthenticator | None = None  # None: authentication disabled
    replay_cache: ReplayCache | None = None  # the shared JWT replay cache (readiness checks it)
    _closers: list[Closer] = field(default_factory=list)

    def close_at_shutdown(self, closer: Closer) -> None:
        """Have `closer` awaited when the app stops (before the database is closed)."""
        self._closers.append(closer)

    def current_storage(self) -> Storage | None:
        """The open storage, or None before start-up and after shutdown (a provider for the services)."""
        return self.storage

    @contextlib.asynccontextmanager
    async def lifespan(self, _: ASGIApp) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            self.storage = await open_storage(self.storage_settings)
            stack.push_async_callback(self._close_storage)
            for closer in self._closers:
                stack.push_async_callback(closer)
            # First at shutdown: the issued cards still queued, within a bound.
            stack.push_async_callback(self.card_memory.flush, SHUTDOWN_FLUSH_SECONDS)
            install_loop_error_filter()
            yield

    async def _close_storage(self) -> None:
        storage, self.storage = self.storage, None
        if storage is not None:
            await storage.close()


def runtime_of(app: ASGIApp) -> Runtime:
    """The `Runtime` of an app built by `create_app()`."""
    runtime = getattr(getattr(app, "state", None), "runtime", None)
    if not isinstance(runtime, Runtime):
        raise TypeError("not an app built by cds_service.app.create_app()")
    return runtime
