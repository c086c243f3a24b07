"""The "ceiling" for the benchmark: what one uvicorn worker can do with a CDS Hooks call when the
service does nothing but receive the body, parse the JSON and answer `{"cards": []}`.

Same stack as the service (FastAPI + uvicorn, same flags in bench/run.py) and the same JSON parser
(orjson, which cds_service/protocol/body.py uses), so the ratio service/ceiling is the share of the
achievable throughput the service keeps after its own work (validation, rules, card).

    .venv/bin/uvicorn bench.ceiling_app:app --workers 1 --host 127.0.0.1 --port 8091
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request) -> JSONResponse:
    body = orjson.loads(await request.body())
    if not isinstance(body, dict):
        return JSONResponse({"error": "invalid_request"}, status_code=400)
    return JSONResponse({"cards": []})
