"""A real Airflow (api-server, and on request dag-processor, scheduler,
triggerer) as separate processes, and Debian's Chromium driven by Playwright.

Used by the plugin page tests and any test about Airflow's servers::

    from tests.browser import AirflowServices, browser, login

    def test_page(airflow_db, tmp_path):
        with AirflowServices(tmp_path, components=("api-server",)) as af, browser() as b:
            page = b.new_page()
            login(page, af)                       # as admin
            page.goto(af.url("/datamill/home/"))
            page.screenshot(path=artefact("home.png"))

Users (SimpleAuthManager, passwords fixed by the harness): ``admin`` (ADMIN),
``user`` (USER: may edit DAGs), ``viewer`` (VIEWER: read-only). Screenshots
go to ``tests/artefacts/`` (ignored by git; CI keeps the workspace).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from tests.helpers import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage"]
USERS = {"admin": "ADMIN", "user": "USER", "viewer": "VIEWER"}
PASSWORDS = {name: f"{name}-pw" for name in USERS}
ARTEFACTS = ROOT / "tests" / "artefacts"


def artefact(name: str) -> str:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return str(ARTEFACTS / name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AirflowServices:
    """Airflow's servers as real processes against the test session's AIRFLOW_HOME.

    ``env`` adds or overrides environment variables for every process (e.g.
    ``DATAMILL_LAKE``, ``DATAMILL_PIPELINES_DIR``). ``db_url`` points every
    process at another metadata database (e.g. a test's PostgreSQL,
    ``postgresql+psycopg2://...``; migrate it first); the default is the test
    session's SQLite. Logs go to ``workdir``;
    a process that dies, or a server that does not come up, fails with the
    tail of its log.
    """

    stop_timeout = 20  # seconds from SIGTERM to SIGKILL

    def __init__(self, workdir: Path, components: tuple[str, ...] = ("api-server",),
                 env: dict[str, str] | None = None, start_timeout: float = 180,
                 db_url: str | None = None):
        self.workdir = Path(workdir)
        self.components = components
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        self.procs: dict[str, subprocess.Popen] = {}
        home = os.environ["AIRFLOW_HOME"]
        self.env = {**os.environ,
                    "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple."
                                                   "simple_auth_manager.SimpleAuthManager",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS":
                        ",".join(f"{u}:{r}" for u, r in USERS.items()),
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE":
                        str(self.workdir / "passwords.json"),
                    "AIRFLOW__API__PORT": str(self.port),
                    "AIRFLOW__API__BASE_URL": self.base,
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
                    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
                    "AIRFLOW__CORE__FERNET_KEY": os.environ.get(
                        "AIRFLOW__CORE__FERNET_KEY", "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="),
                    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                    # The scheduler and triggerer serve task logs on fixed ports
                    # (8793/8794) by default; other test Airflows may hold them.
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                    "AIRFLOW_HOME": home,
                    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                    **({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url} if db_url else {}),
                    **(env or {})}
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "passwords.json").write_text(json.dumps(PASSWORDS))

    def url(self, path: str) -> str:
        return self.base + path

    def log(self, component: str) -> Path:
        return self.workdir / f"{component}.log"

    def tail(self, component: str, n: int = 60) -> str:
        try:
            return "\n".join(self.log(component).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        fh = open(self.log(name), "wb")
        self.procs[name] = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT,
                                            env=self.env, cwd=str(ROOT), start_new_session=True)
        return self.procs[name]

    def _start(self) -> None:
        for c in self.components:
            args = [sys.executable, "-m", "airflow", c]
            if c == "api-server":
                args += ["--port", str(self.port), "--host", "127.0.0.1"]
            self._spawn(c, args)

    def __enter__(self) -> "AirflowServices":
        self._start()
        try:
            self._wait_healthy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.time() + self.start_timeout
        while time.time() < deadline:
            for c, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"airflow {c} exited with {p.returncode}:\n{self.tail(c)}")
            if "api-server" not in self.procs:
                return
            try:
                with urllib.request.urlopen(self.url("/api/v2/monitor/health"), timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise RuntimeError(f"airflow api-server not healthy after {self.start_timeout} s:\n"
                           f"{self.tail('api-server')}")

    def check_alive(self) -> None:
        for c, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"airflow {c} exited with {p.returncode}:\n{self.tail(c)}")

    def __exit__(self, *exc) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for c, p in self.procs.items():
            try:
                p.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)

    # -- REST -------------------------------------------------------------
    def token(self, user: str = "admin") -> str:
        body = json.dumps({"username": user, "password": PASSWORDS[user]}).encode()
        req = urllib.request.Request(self.url("/auth/token"), data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())["access_token"]

    def request(self, method: str, path: str, body: Any = None, *, user: str | None = "admin",
                token: str | None = None, headers: dict[str, str] | None = None
                ) -> tuple[int, Any]:
        """(status, parsed JSON or text); never raises on HTTP errors."""
        h = {"Accept": "application/json", **(headers or {})}
        if token is None and user is not None:
            token = self.token(user)
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")


@contextlib.contextmanager
def browser(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A Playwright browser context on Debian's Chromium (never a downloaded one)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} missing: scripts/setup.sh installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        ctx = b.new_context(viewport={"width": width, "height": height})
        try:
            yield ctx
        finally:
            ctx.close()
            b.close()


def login(page, af: AirflowServices, user: str = "admin") -> None:
    """Log in through Airflow's own login form, as a person does."""
    page.goto(af.url("/"))
    page.wait_for_selector("input[name=username]", timeout=60_000)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_function("() => !location.pathname.startsWith('/auth/login')", timeout=60_000)
    page.wait_for_load_state("networkidle")


def plugin_frame(page, timeout: float = 60_000):
    """The iframe in which Airflow shows a plugin page (``external_views`` with ``url_route``)."""
    page.wait_for_selector("iframe", timeout=timeout)
    handle = page.query_selector("iframe")
    frame = handle.content_frame()
    frame.wait_for_load_state("load")
    return frame
