"""Reads missing prefetch data from the EHR's FHIR server (FHIR R4 REST search over httpx).

* The same searches as the prefetch templates, run concurrently, under one overall deadline.
* Bundle `next` links are followed up to a page and resource cap; a link that leaves the server's
  base URL, or repeats, ends that search as a failure (never sends the token elsewhere).
* Each answer is streamed and read only up to `max_page_bytes` (after decompression): a larger page
  ends that search as a failure as soon as the cap is passed, and is never held whole. The resource
  cap is applied to each page as it is read, not only between pages. The overall deadline covers the
  whole call, parsing included; the byte cap bounds how long parsing one page can hold the event
  loop (orjson holds the GIL, so a thread would not help: 8 MB of FHIR JSON took 0.24 s on the
  2-core development machine, hence the 4 MB default, CDS_FHIR_MAX_PAGE_BYTES).
* A search the server refuses for its form (HTTP 400 / 422, or a 403 that is not about the token,
  with an OperationOutcome that is not "not-supported": e.g. Epic's answer to an Observation search
  with neither category nor code) is sent once more in the narrower form the prefetch policy declares for it
  (`when_refused`). Identical searches of one call are sent once and shared.
* The bearer token from `fhirAuthorization` is sent only to the request's own `fhirServer`, and only
  when that server is on the configured allowlist. Nothing here logs tokens, URLs with patient ids,
  or resource content.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson

from cds_service.fhir.source import DataUnavailable, ServerNotAllowed
from cds_service.metrics import FHIR_READ_SECONDS, FHIR_READS

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"


def normalise_base(url: str) -> str:
    return url.rstrip("/") + "/"


class FhirSearchClient:
    """A `MissingDataFetcher` that searches the EHR's FHIR server."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        allowed_servers: list[str],
        deadline_seconds: float = 1.5,
        max_resources: int = 5000,
        max_pages: int = 20,
        max_page_bytes: int = 4 * 1024 * 1024,
    ):
        self._http = http
        self._allowed = [normalise_base(s) for s in allowed_servers if "://" in s]
        self._allowed_hosts = {s.lower() for s in allowed_servers if "://" not in s}
        self._deadline = deadline_seconds
        self._max_resources = max_resources
        self._max_pages = max_pages
        self._max_page_bytes = max_page_bytes

    def is_allowed(self, fhir_server: str) -> bool:
        base = normalise_base(fhir_server)
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            return False
        return base in self._allowed or parts.hostname.lower() in self._allowed_hosts

    async def fetch(
        self,
        queries: Mapping[str, str],
        fhir_server: str | None,
        access_token: str | None,
        when_refused: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        if not fhir_server:
            raise DataUnavailable({k: "no fhirServer in the request" for k in queries})
        if not self.is_allowed(fhir_server):
            raise ServerNotAllowed()
        base = normalise_base(fhir_server)
        headers = {"Accept": FHIR_JSON}
        if access_token:
            headers["Authorization"] = f"Bearer {access_token}"
        shared: dict[str, asyncio.Future[dict[str, Any]]] = {}
        narrower = when_refused or {}
        tasks = {
            key: asyncio.create_task(self._search_key(base, query, narrower.get(key), headers, shared))
            for key, query in queries.items()
        }
        done, pending = await asyncio.wait(tasks.values(), timeout=self._deadline)
        for task in pending:
            task.cancel()
        results: dict[str, Any] = {}
        failures: dict[str, str] = {}
        for key, task in tasks.items():
            if task in pending:
                failures[key] = f"the FHIR server did not answer within {self._deadline:g} s"
            elif task.exception() is not None:
                exc = task.exception()
                failures[key] = (
                    str(exc) if isinstance(exc, _SearchFailed) else f"FHIR read failed ({type(exc).__name__})"
                )
            else:
                results[key] = task.result()
        if failures:
            log.warning(
                "FHIR searches failed",
                extra={
                    "event": "fhir_read",
                    "count": len(failures),
                    "searches": len(queries),
                    "reasons": sorted(set(failures.values())),
                },
            )
            raise DataUnavailable(failures, partial=results)
        return results

    async def _search_key(
        self,
        base: str,
        query: str,
        narrower: str | None,
        headers: dict[str, str],
        shared: dict[str, asyncio.Future[dict[str, Any]]],
    ) -> dict[str, Any]:
        """One key's search; when the server refuses it and a narrower form is declared, that one."""
        try:
            return await self._shared_search(base, query, headers, shared)
        except _Refused as exc:
            if narrower is None:
                raise
            # The resource type and status only: the query holds the patient id.
            log.info(
                "fhir: search refused, retried in its narrower form",
                extra={
                    "event": "fhir_search_retried",
                    "status": exc.status,
                    "reason": query.split("?", 1)[0].split("/", 1)[0],
                },
            )
            return await self._shared_search(base, narrower, headers, shared)

    async def _shared_search(
        self, base: str, query: str, headers: dict[str, str], shared: dict[str, asyncio.Future[dict[str, Any]]]
    ) -> dict[str, Any]:
        """`_search`, sent once per call for a query two keys ask for (e.g. a refused search's narrower
        form that is another key's query)."""
        future = shared.get(query)
        if future is None:
            future = shared[query] = asyncio.ensure_future(self._search(base, query, headers))
        return await future

    async def _search(self, base: str, query: str, headers: dict[str, str]) -> dict[str, Any]:
        url: str | None = urljoin(base, query)
        seen: set[str] = set()
        entries: list[Any] = []
        pages = 0
        while url is not None:
            if url in seen:
                raise _SearchFailed("paging looped back to a page already read")
            if not url.startswith(base):
                raise _SearchFailed("a paging link pointed outside the FHIR server")
            if pages >= self._max_pages:
                raise _SearchFailed("more results than the service reads (page or resource cap)")
            seen.add(url)
            pages += 1
            bundle = await self._get(url, headers, single=not query.count("?"))
            if bundle.get("resourceType") != "Bundle":
                return bundle  # a read (e.g. Patient/123) returns the resource itself
            page_entries = bundle.get("entry") or []
            if not isinstance(page_entries, list) or len(entries) + len(page_entries) > self._max_resources:
                raise _SearchFailed("more results than the service reads (page or resource cap)")
            entries += [e for e in page_entries if isinstance(e, dict)]
            url = next(
                (
                    link.get("url")
                    for link in bundle.get("link") or []
                    if isinstance(link, dict) and link.get("relation") == "next"
                ),
                None,
            )
        return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}

    async def _get(self, url: str, headers: dict[str, str], single: bool) -> dict[str, Any]:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await self._read(url, headers, single)
        except _SearchFailed as exc:
            outcome = exc.kind
            raise
        except asyncio.CancelledError:
            outcome = "deadline"
            raise
        finally:
            FHIR_READS.labels(outcome).inc()
            FHIR_READ_SECONDS.labels(outcome).observe(time.perf_counter() - started)

    async def _read(self, url: str, headers: dict[str, str], single: bool) -> dict[str, Any]:
        try:
            async with self._http.stream("GET", url, headers=headers, follow_redirects=False) as response:
                if response.status_code in (400, 403, 422) and await self._refuses_search(response):
                    raise _Refused(response.status_code)
                if response.status_code in (401, 403):
                    raise _SearchFailed(
                        f"the FHIR server refused the access token (HTTP {response.status_code})", "unauthorized"
                    )
                if response.status_code != 200:
                    raise _SearchFailed(f"the FHIR server answered HTTP {response.status_code}", "http_error")
                content = await self._read_capped(response)
        except httpx.TimeoutException:
            raise _SearchFailed("the FHIR server timed out", "timeout") from None
        except httpx.HTTPError as exc:
            raise _SearchFailed(f"could not reach the FHIR server ({type(exc).__name__})", "connection") from None
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise _SearchFailed("the FHIR server's answer is not JSON", "invalid_body") from None
        del content
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise _SearchFailed("the FHIR server's answer is not a FHIR resource", "invalid_body")
        if body["resourceType"] == "OperationOutcome":
            raise _SearchFailed("the FHIR server answered with an OperationOutcome", "operation_outcome")
        if not single and body["resourceType"] != "Bundle":
            raise _SearchFailed("the FHIR server's search answer is not a Bundle", "invalid_body")
        return body

    async def _read_capped(self, response: httpx.Response) -> bytes:
        """The (decompressed) body, or a failure as soon as it passes `max_page_bytes`."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_page_bytes:  # (compressed: larger still once decoded)
            raise _SearchFailed(self._too_large(), "too_large")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_page_bytes:
                raise _SearchFailed(self._too_large(), "too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _refuses_search(self, response: httpx.Response) -> bool:
        """Whether this 400 / 403 / 422 refuses the search's form (read within the byte cap)."""
        try:
            content = await self._read_capped(response)
        except _SearchFailed:
            return False
        return _refuses_search(response.status_code, content)

    def _too_large(self) -> str:
        return f"a FHIR answer page is larger than the service reads ({self._max_page_bytes} bytes)"


# OperationOutcome issue types that a narrower form of the same search cannot answer: the caller's
# access, or a resource type / interaction the server does not offer at all.
_NOT_THE_SEARCH_FORM = frozenset(
    {"security", "login", "unknown", "expired", "forbidden", "suppressed", "throttled", "not-supported", "not-found"}
)


def _refuses_search(status: int, content: bytes) -> bool:
    """True when the answer refuses the form of the search (e.g. a required parameter missing), not
    the token nor the resource type: an OperationOutcome with a 400 / 422, or with a 403 that names
    its issues, none of them an access or not-supported issue."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return False
    issues = body.get("issue")
    codes = (
        {i["code"] for i in issues if isinstance(i, dict) and isinstance(i.get("code"), str)}
        if isinstance(issues, list)
        else set()
    )
    if codes & _NOT_THE_SEARCH_FORM:
        return False
    return bool(codes) or status != 403


class _SearchFailed(Exception):
    """One search could not be completed; the message is safe to show (no PHI, no token)."""

    def __init__(self, message: str, kind: str = "paging"):
        super().__init__(message)
        self.kind = kind  # the metrics label


class _Refused(_SearchFailed):
    """The server refused the search as one it does not allow (not an access problem)."""

    def __init__(self, status: int):
        super().__init__(f"the FHIR server refused this search (HTTP {status}, OperationOutcome)", "refused")
        self.status = status
