"""The API with the web page mounted, for uvicorn: `tests.browser.webapp:create_app`.

Once `ganserve.service.app.create_app` includes the web router itself this adds nothing.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.routing import NoMatchFound

from ganserve.service import app as service_app
from ganserve.service.routes import translate, web


def with_web_page(app: FastAPI) -> FastAPI:
    """`app` with the web page's routes, unless it has them already."""
    try:
        app.url_path_for(web.web_page.__name__)
    except NoMatchFound:
        app.include_router(web.router)
    try:  # the CycleGAN translate route, until app.py mounts it too
        app.url_path_for(translate.translate.__name__, name="x")
    except NoMatchFound:
        app.include_router(translate.router)
    return app


def create_app() -> FastAPI:
    return with_web_page(service_app.create_app())
