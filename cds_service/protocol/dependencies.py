"""Typed FastAPI dependencies: what a route may ask for, read from the app's `Runtime`.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, which
would cost every hook call a thread hand-off per dependency for what is an attribute read.
`tests/protocol/test_dependencies.py` keeps it so.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cds_service.protocol.service import ServiceRegistry
from cds_service.runtime import Runtime, runtime_of
from cds_service.services.card_memory import CardMemory
from cds_service.settings import Settings
from cds_service.storage.db import Storage


async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request.app)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


async def get_registry(runtime: RuntimeDep) -> ServiceRegistry:
    return runtime.registry


async def get_storage(runtime: RuntimeDep) -> Storage | None:
    """The open database, or None (not started, or shut down): callers answer 503 or go on without it."""
    return runtime.storage


async def get_card_memory(runtime: RuntimeDep) -> CardMemory:
    return runtime.card_memory


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ServiceRegistry, Depends(get_registry)]
StorageDep = Annotated[Storage | None, Depends(get_storage)]
CardMemoryDep = Annotated[CardMemory, Depends(get_card_memory)]
