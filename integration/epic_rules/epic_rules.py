"""An Epic-shaped EHR for integration tests: a small real HTTP proxy in front of a FHIR R4 server
(Medplum's router in tests/system) that applies the rules of Epic's FHIR server that matter to a CDS
service, and fills a CDS Hooks prefetch the way such an EHR does.

FHIR (`GET /fhir/...`), as Epic's server answers:
* a bearer token is required (401 with an OperationOutcome without one);
* an Observation search with neither `category` nor `code` is refused: HTTP 400 with an
  OperationOutcome (US Core's required search combinations);
* `_count` is capped (EPIC_RULES_COUNT_CAP, default 10), so longer results come in pages whose
  `next` links point back at this proxy;
* every searchset page carries an OperationOutcome entry (`search.mode: outcome`): information
  when there are results, a warning when there are none.

CDS client (`POST /ehr/prefetch`, body `{"templates": {...}, "context": {...}}`): each template is
filled from the context and run through the rules above; a key whose search is refused, or whose
tokens the context cannot fill, is LEFT OUT of the prefetch (as Epic does); a read that finds
nothing is `null`. Answers `{"prefetch": {...}, "leftOut": [...]}`.

Run: UPSTREAM_FHIR_BASE=http://127.0.0.1:8103/fhir EPIC_RULES_TOKEN=secret \
     uvicorn --app-dir integration/epic_rules epic_rules:app --port 8200
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

UPSTREAM = os.environ.get("UPSTREAM_FHIR_BASE", "http://127.0.0.1:8103/fhir").rstrip("/")
TOKEN = os.environ.get("EPIC_RULES_TOKEN", "")
COUNT_CAP = int(os.environ.get("EPIC_RULES_COUNT_CAP", "10"))
FHIR_JSON = "application/fhir+json"
_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z][A-Za-z0-9_]*)\s*\}\}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# Searches this server refuses without one of these parameters (US Core's required combinations).
QUALIFIERS = {"Observation": ("category", "code")}


def outcome(severity: str, code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "details": {"text": text}}],
    }


def _fhir(body: dict[str, Any], status: int) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def refusal(resource_type: str, params: list[tuple[str, str]]) -> dict[str, Any] | None:
    """The OperationOutcome refusing this search, or None when it is allowed."""
    needed = QUALIFIERS.get(resource_type)
    if needed is None:
        return None
    names = {name.split(":", 1)[0] for name, value in params if value}
    if names & set(needed):
        return None
    return outcome(
        "error", "required", f"A {resource_type} search requires one of these parameters: {', '.join(needed)}."
    )


def _capped(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    counts = [int(v) for k, v in params if k == "_count" and v.isdigit()]
    count = min(counts[0], COUNT_CAP) if counts else COUNT_CAP
    return [(k, v) for k, v in params if k != "_count"] + [("_count", str(count))]


def _epic_searchset(bundle: dict[str, Any], own_base: str) -> dict[str, Any]:
    """Links rewritten to this proxy, and an OperationOutcome entry as Epic adds one."""
    out = dict(bundle)
    out["link"] = [
        {**link, "url": own_base + link["url"][len(UPSTREAM) :]}
        if isinstance(link, dict) and str(link.get("url", "")).startswith(UPSTREAM)
        else link
        for link in bundle.get("link") or []
    ]
    entries = list(bundle.get("entry") or [])
    if entries:
        note = outcome("information", "informational", "Results are limited to data the user may see.")
    else:
        note = outcome("warning", "not-found", "No resources matched the search.")
    out["entry"] = [*entries, {"resource": note, "search": {"mode": "outcome"}}]
    return out


class EpicRules:
    def __init__(self, http: httpx.AsyncClient):
        self.http = http

    async def get(self, path: str, params: list[tuple[str, str]], own_base: str) -> tuple[int, dict[str, Any]]:
        """GET one FHIR path under the rules: (status, body)."""
        path = path.strip("/")
        is_search = "/" not in path
        if is_search:
            refused = refusal(path, params)
            if refused is not None:
                return 400, refused
            params = _capped(params)
        response = await self.http.get(f"{UPSTREAM}/{path}", params=tuple(params), headers={"Accept": FHIR_JSON})
        body = response.json()
        if is_search and response.status_code == 200 and body.get("resourceType") == "Bundle":
            body = _epic_searchset(body, own_base)
        return response.status_code, body


def _own_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


async def fhir(request: Request) -> JSONResponse:
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        return _fhir(outcome("error", "login", "A valid bearer token is required."), 401)
    rules: EpicRules = request.app.state.rules
    status, body = await rules.get(
        request.path_params["path"], list(request.query_params.multi_items()), _own_base(request)
    )
    return _fhir(body, status)


def fill(template: str, context: dict[str, Any]) -> str | None:
    """The template with its context tokens filled, or None when the context lacks one."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        found = context.get(match.group(1))
        if not isinstance(found, str) or not _FHIR_ID.fullmatch(found):
            missing = True
            return ""
        return found

    filled = _TOKEN.sub(value, template)
    return None if missing or "{{" in filled else filled


async def prefetch(request: Request) -> JSONResponse:
    """Fill a CDS service's prefetch templates the way an Epic-shaped CDS client does."""
    body = await request.json()
    rules: EpicRules = request.app.state.rules
    values: dict[str, Any] = {}
    left_out: list[str] = []
    for key, template in body["templates"].items():
        query = fill(template, body["context"])
        if query is None:
            left_out.append(key)
            continue
        path, _, raw_params = query.partition("?")
        params = [(name, val) for name, _, val in (p.partition("=") for p in raw_params.split("&") if p)]
        status, value = await rules.get(path, params, _own_base(request))
        if status == 200:
            values[key] = value
        elif status == 404 and not raw_params:
            values[key] = None  # a read that found nothing
        else:
            left_out.append(key)  # refused (or failed): the key is not sent at all
    return JSONResponse({"prefetch": values, "leftOut": left_out})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"countCap": COUNT_CAP})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with httpx.AsyncClient(timeout=30) as http:
        app.state.rules = EpicRules(http)
        yield


app = Starlette(
    routes=[
        Route("/fhir/{path:path}", fhir, methods=["GET"]),
        Route("/ehr/prefetch", prefetch, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ],
    lifespan=lifespan,
)
