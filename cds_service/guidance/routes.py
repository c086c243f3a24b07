"""GET /guidance/ms-back-pain: the page every card links to. Rendered once, at start-up: it holds no
patient data, so it may be cached."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from cds_service.cards.content import CardContent, GuidanceContent
from cds_service.cards.links import GUIDANCE_PATH
from cds_service.guidance.page import render_guidance


def guidance_router(guidance: GuidanceContent, content: CardContent) -> APIRouter:
    page = render_guidance(guidance, content)
    headers = {
        "Content-Security-Policy": page.content_security_policy,
        "Cache-Control": "public, max-age=3600",
        "X-Content-Type-Options": "nosniff",
    }
    router = APIRouter()

    @router.get(GUIDANCE_PATH, include_in_schema=False)
    async def guidance_page() -> Response:
        return Response(page.html, media_type="text/html; charset=utf-8", headers=headers)

    return router
