"""Who may read the governance report: the holder of CDS_ADMIN_TOKEN, a secret of its own.

Not the EHR's JWT trust: an EHR that may call the hooks may not read the report. Without a
configured token the report does not exist (404, as any unknown path). With one, the request must
carry `Authorization: Bearer <token>`, compared in constant time; anything else is 401.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse

from cds_service.protocol.errors import error_response
from cds_service.settings import Settings


def admin_denial(request: Request, settings: Settings) -> JSONResponse | None:
    """None when the request may read the report; else the answer to send (404 or 401)."""
    expected = settings.admin_token
    if expected is None:
        return error_response(404, "not_found", "Not Found")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    given = presented.strip().encode("utf-8")
    # compare_digest on bytes of any length: the time does not depend on where they differ.
    if scheme.lower() == "bearer" and given and hmac.compare_digest(given, expected.get_secret_value().encode("utf-8")):
        return None
    response = error_response(401, "unauthorized", "The report needs the admin token (Authorization: Bearer).")
    response.headers["WWW-Authenticate"] = 'Bearer realm="cds-admin"'
    return response
