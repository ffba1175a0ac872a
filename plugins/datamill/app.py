"""The plugin's FastAPI app: every page module's router under ``/datamill``.

Authentication is a dependency of the app itself, so every route of every
page (and any added later) requires a logged-in Airflow user; see
``plugins/datamill/__init__.py`` for how pages are added.
"""
from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from fastapi import FastAPI

from plugins.datamill import PAGES
from plugins.datamill.auth import CanView

log = logging.getLogger(__name__)


def _strict() -> bool:
    return os.environ.get("DATAMILL_STRICT", "") not in ("", "0", "false")


def load_pages() -> list[Any]:
    """The page modules that exist and import; a broken one is skipped (raised when strict)."""
    mods = []
    for name in PAGES:
        try:
            mods.append(importlib.import_module(f"plugins.datamill.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name == f"plugins.datamill.{name}":
                continue  # page not written yet
            if _strict():
                raise
            log.exception("datamill plugin: page %s unavailable", name)
        except Exception:
            if _strict():
                raise
            log.exception("datamill plugin: page %s unavailable", name)
    return mods


def create_app() -> tuple[FastAPI, list[dict[str, Any]]]:
    app = FastAPI(title="datamill", description="datamill pages and their JSON API inside "
                  "Airflow; every route requires Airflow authentication.",
                  dependencies=[CanView], docs_url=None, redoc_url=None, openapi_url=None)
    views: list[dict[str, Any]] = []
    for mod in load_pages():
        name = mod.__name__.rsplit(".", 1)[-1]
        app.include_router(mod.router, prefix=f"/{name}")
        views.extend(getattr(mod, "VIEWS", []))
    return app, views


app, views = create_app()
