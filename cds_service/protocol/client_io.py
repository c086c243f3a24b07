"""Clients that send their body too slowly, or go away before the answer.

* `BodyReadDeadline`: an ASGI middleware that gives every request `timeout` seconds, from the app's
  first read, to deliver its whole body. A client that has not finished by then gets
  408 `{"error": "request_timeout", ...}` with `Connection: close` (the server then drops the
  connection), and the app sees the client as gone. Without it a client that sends its headers and
  half a body, then nothing, holds a call (and a load-shedding place) for as long as it likes.
* `install_client_disconnect_handler`: a client that disconnects mid-body (Starlette raises
  `ClientDisconnect`) is one INFO log line, not an ERROR with a traceback: there is nobody to answer.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from fastapi import FastAPI, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.metrics import CLIENT_ABORTS

log = logging.getLogger("cds_service.calls")

REQUEST_TIMEOUT_BODY = orjson.dumps(
    {"error": "request_timeout", "message": "The request body was not received in time."}
)


TIMED_OUT_STATE = "body_read_timed_out"


class BodyReadDeadline:
    def __init__(self, app: ASGIApp, timeout: float):
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        body_done = False
        timed_out = False
        response_started = False

        async def bounded_receive() -> Message:
            nonlocal deadline, body_done, timed_out
            if timed_out:
                return {"type": "http.disconnect"}
            if body_done:  # after the body: waiting for a disconnect is not bounded here
                return await receive()
            if deadline is None:
                deadline = loop.time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):  # no task of its own, unlike wait_for
                    message = await receive()
            except TimeoutError:
                timed_out = True
                scope.setdefault("state", {})[TIMED_OUT_STATE] = True
                CLIENT_ABORTS.labels("body_timeout").inc()
                log.info("request body not received in time", extra={"event": "body_timeout", "status": 408})
                if not response_started:
                    await _send_408(send)
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if timed_out:
                return  # the 408 has been sent; whatever the app answers after that is dropped
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, bounded_receive, guarded_send)


async def _send_408(send: Send) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(REQUEST_TIMEOUT_BODY)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 408, "headers": headers})
    await send({"type": "http.response.body", "body": REQUEST_TIMEOUT_BODY})


def install_client_disconnect_handler(app: FastAPI) -> None:
    @app.exception_handler(ClientDisconnect)
    async def _client_disconnected(request: Request, _: ClientDisconnect) -> Response:
        if request.scope.get("state", {}).get(TIMED_OUT_STATE):
            return Response(status_code=408)  # answered and logged by BodyReadDeadline
        CLIENT_ABORTS.labels("disconnect").inc()
        log.info(
            "client disconnected before the answer",
            extra={"event": "client_disconnect", "reason": request.method},
        )
        return Response(status_code=499)  # never delivered: the client is gone
