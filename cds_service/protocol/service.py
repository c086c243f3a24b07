"""The plug-in point between the protocol and any clinical service (as in HAPI's CDS Hooks module).

A service declares its discovery entry and the pydantic model of its hook's context, and answers
a validated request with a `CdsResponse`. The routes do the rest: they validate the context with
`context_model` and hand the service an instance of exactly that model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from cds_service.protocol.models import CdsRequest, CdsResponse, ServiceDescriptor

ContextT = TypeVar("ContextT", bound=BaseModel)


class CdsService(ABC, Generic[ContextT]):
    """A CDS service over the context model `ContextT` of its hook."""

    descriptor: ServiceDescriptor
    context_model: type[ContextT]

    @abstractmethod
    async def handle(self, request: CdsRequest, context: ContextT) -> CdsResponse: ...


class ServiceRegistry:
    """The services this server offers, by id, in discovery order."""

    def __init__(self, services: list[CdsService[Any]]):
        self._services = {s.descriptor.id: s for s in services}
        if len(self._services) != len(services):
            raise ValueError("service ids must be unique")

    def get(self, service_id: str) -> CdsService[Any] | None:
        return self._services.get(service_id)

    def descriptors(self) -> list[ServiceDescriptor]:
        return [s.descriptor for s in self._services.values()]
