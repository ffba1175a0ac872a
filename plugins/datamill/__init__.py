"""datamill's Airflow plugin: one FastAPI app under ``/datamill`` and its pages.

``plugins/datamill_plugin.py`` is the only file Airflow loads from the plugins
folder (``plugins/.airflowignore`` hides this package from Airflow's loader,
which would otherwise import every file here a second time as a top-level
module); it registers :data:`plugins.datamill.app.app` and the pages' nav
entries.

Adding a page
-------------
One module per page or API area in this package, e.g. ``plugins/datamill/runs.py``::

    from fastapi import APIRouter
    from plugins.datamill import ui
    from plugins.datamill.auth import CanEditDags, User

    router = APIRouter()
    VIEWS = [ui.nav_view("Runs", "runs")]           # nav entry -> GET /datamill/runs/

    @router.get("/")
    def page():
        return ui.page("Runs", "<div id=runs></div>", script=JS)

    @router.get("/api/runs")
    def runs(pipeline: str | None = None):
        return include.something.list_runs(pipeline)   # engine code lives in include/

    @router.post("/api/approve", dependencies=[CanEditDags])
    def approve(body: Body, user: User): ...

and add the module's name to :data:`PAGES` below. Its router is mounted at
``/datamill/<module name>``. Rules every page follows:

- **Authentication is global**: the app itself depends on Airflow's
  ``requires_access_view(AccessView.PLUGINS)`` (``auth.py``), so no route,
  HTML, JSON or static, answers without a logged-in Airflow user (the UI's
  cookie or a Bearer token from ``POST /auth/token``). Routes that change
  something also take ``CanEditDags`` (Airflow's DAG edit permission) or a
  stricter check, and accept only JSON bodies (``auth.json_body`` is implied
  by pydantic body models; a browser cannot send cross-site JSON without a
  CORS pre-flight, which this app never grants).
- **No pipeline logic here**: routes call engine code in ``include/`` (agent,
  lakehouse, reports); this package only shapes HTTP and HTML.
- **Everything shown is escaped** (``ui.esc``; the JS helper ``dm.text()`` and
  ``dm.el()`` set ``textContent``, never ``innerHTML`` with data): request
  text, LLM answers and documents are untrusted.
- Pages are plain HTML + a little vanilla JS (no build step), rendered inside
  Airflow's UI as iframes (``external_views`` with ``url_route``). Views for a
  DAG run use ``destination="dag_run"`` and the ``{DAG_ID}``/``{RUN_ID}``
  placeholders (``ui.run_view``).
- A page module that fails to import is logged and skipped (raised under
  ``DATAMILL_STRICT=1``), so one broken page cannot take down the others.

Testing pages: ``tests/browser.py`` starts a real ``airflow api-server`` (and,
on request, dag-processor and scheduler) with known users and drives Debian's
Chromium with Playwright; see ``tests/plugin/test_plugin_app.py``.
"""

# Page modules, mounted at /datamill/<name>. Order = order in the nav menu.
PAGES = ("home", "agent", "runs", "reports", "inspect", "lineage", "training")
