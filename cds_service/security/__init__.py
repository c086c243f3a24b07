"""CDS Hooks 2.0 client authentication: signed JWTs from trusted CDS Clients ("Trusting CDS Clients").

`install_client_auth(app, AuthSettings(), http)` protects the service calls; discovery stays open.
"""

from __future__ import annotations

from cds_service.security.dependency import install_client_auth
from cds_service.security.jwt_auth import AuthenticationFailed, ClientAuthenticator, ClientIdentity
from cds_service.security.replay import InMemoryReplayCache, ReplayCache
from cds_service.security.settings import AuthSettings, TrustedIssuer

__all__ = [
    "AuthSettings",
    "AuthenticationFailed",
    "ClientAuthenticator",
    "ClientIdentity",
    "InMemoryReplayCache",
    "ReplayCache",
    "TrustedIssuer",
    "install_client_auth",
]
