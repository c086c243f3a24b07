"""`/docs`: the OpenAPI document rendered by Swagger UI, served with no external asset.

A hospital network may have no route to a CDN, so the Swagger UI script and stylesheet come from
the `fastapi-offline` package's data, served by the service itself under `/docs-assets`. The page
needs its own scripts and styles (and Swagger UI's one inline start-up script), so it answers with
a content security policy of its own instead of the `default-src 'none'` every other answer gets.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS_URL = "/docs-assets"
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)


def install_offline_docs(app: FastAPI, docs_url: str = "/docs") -> None:
    assets = resources.files("fastapi_offline").joinpath("static")
    app.mount(ASSETS_URL, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )
        page.headers["content-security-policy"] = DOCS_CSP
        return page
