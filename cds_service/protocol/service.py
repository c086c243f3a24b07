"""The plug-in point between the protocol and any clinical service (as in HAPI's CDS Hooks module).

A service declares its discovery entry and the pydantic model of its hook's context, and answers
a validated request with a `CdsResponse`. The routes do the rest.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from cds_service.protocol.models import CdsRequest, CdsResponse, ServiceDescriptor


class CdsService(Protocol):
    descriptor: ServiceDescriptor
    context_model: type[BaseModel]

    async def handle(self, request: CdsRequest, context: BaseModel) -> CdsResponse: ...


class ServiceRegistry:
    """The services this server offers, by id, in discovery order."""

    def __init__(self, services: list[CdsService]):
        self._services = {s.descriptor.id: s for s in services}
        if len(self._services) != len(services):
            raise ValueError("service ids must be unique")

    def get(self, service_id: str) -> CdsService | None:
        return self._services.get(service_id)

    def descriptors(self) -> list[ServiceDescriptor]:
        return [s.descriptor for s in self._services.values()]
