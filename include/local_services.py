"""Local services for running Airflow on this project: PostgreSQL, a Spark
Connect server with Delta, and a Ray head, each a child process of whoever
starts it (``make airflow``'s supervisor, a test, a benchmark).

- :class:`LocalPostgres`: Debian's PostgreSQL server binaries
  (``/usr/lib/postgresql/<v>/bin``) on a data directory of our own, run in the
  foreground as a child process (as the ``postgres`` user when we are root,
  since ``initdb`` refuses root), listening on 127.0.0.1 only.
- :class:`SparkConnectServer`: Spark's own ``SparkConnectServer`` (what
  ``sbin/start-connect-server.sh`` runs; the pyspark wheel ships
  ``spark-submit`` but not that script) with Delta's jars from ``.cache/ivy``
  and Delta's SQL extension and catalog, so Airflow tasks connect in about a
  second instead of starting a JVM each.
- :class:`RayHead`: ``ray start --head --block`` with every port chosen free
  and a temp dir of its own, so stopping it stops only its own processes (never
  ``ray stop``, which stops every Ray on the machine).

``python -m include.local_services spark-connect --master URL --host H --port P``
runs the server in the foreground (docker-compose's ``spark-connect`` service).
``python -m include.local_services serve [--postgres DIR] [--spark-connect]
[--ray] --env-file FILE`` starts the chosen services, writes the environment
that points Airflow at them (``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``,
``AIRFLOW_CONN_DATAMILL_SPARK``, ``AIRFLOW_CONN_DATAMILL_RAY``) to FILE once they
are ready, and stops them on SIGTERM/SIGINT: ``scripts/airflow.sh`` runs it
beside ``airflow standalone``. ``check-db URL`` says clearly whether a
metadata database is reachable.

Engine-side code: no Airflow imports.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from include.config import IVY_DIR, PROJECT_ROOT

CONNECT_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


class _Process:
    """A child process in its own session, logged to a file, stopped by group."""

    name = "service"
    proc: subprocess.Popen | None = None

    def _spawn(self, cmd: list[str], log: Path, env: dict[str, str] | None = None,
               cwd: str | None = None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                         env=env or os.environ.copy(), cwd=cwd or str(PROJECT_ROOT),
                                         start_new_session=True)

    def _wait(self, ready, timeout: float) -> None:
        deadline = time.time() + timeout
        while not ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{_tail(self.log)}")
            if time.time() > deadline:
                self.stop()
                raise ServiceError(f"{self.name} not ready after {timeout:.0f} s:\n"
                                   f"{_tail(self.log)}")
            time.sleep(0.5)

    def stop(self, timeout: float = 60) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self):  # pragma: no cover - each service has its own
        raise NotImplementedError


# -- PostgreSQL ------------------------------------------------------------------
def postgres_bin() -> Path | None:
    """Debian's server binaries: the newest /usr/lib/postgresql/<v>/bin, else pg_ctl's folder."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parent.parent.name) if
                   Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(os.path.realpath(pg_ctl)).parent if pg_ctl else None


class LocalPostgres(_Process):
    """A PostgreSQL cluster in ``datadir`` on 127.0.0.1:``port``, as a child process.

    ``initdb`` runs once (trust authentication for 127.0.0.1 and the socket in
    ``datadir``: a private development/test cluster, never exposed); the
    database ``dbname`` is created on first start.
    """

    name = "PostgreSQL"

    def __init__(self, datadir: str | Path, port: int | None = None, user: str = "airflow",
                 dbname: str = "airflow", cleanup: bool = False):
        self.datadir = Path(datadir).resolve()
        self.port = port or free_port()
        self.user, self.dbname = user, dbname
        self.cleanup = cleanup  # remove the cluster's files on stop (tests)
        self.bin = postgres_bin()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        return ["runuser", "-u", "postgres", "--", *cmd]

    def start(self) -> "LocalPostgres":
        if self.bin is None:
            raise ServiceError("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): "
                               "install Debian's 'postgresql' package (scripts/setup.sh does)")
        if os.geteuid() == 0 and not self._owner_reaches(self.datadir):
            # The server runs as 'postgres', which cannot enter private folders such
            # as pytest's 0700 temp dirs: keep the cluster in /tmp, named after datadir.
            import hashlib

            tag = hashlib.sha1(str(self.datadir).encode()).hexdigest()[:12]
            self.datadir = Path(os.environ.get("TMPDIR", "/tmp")) / f"datamill-pg-{tag}"
        data, sock = self.datadir / "data", self.datadir / "run"
        for d in (self.datadir, sock):
            d.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.datadir)], check=True)
        if not (data / "PG_VERSION").is_file():
            res = subprocess.run(self._as_owner(
                [str(self.bin / "initdb"), "-D", str(data), "-U", self.user, "-E", "UTF8",
                 "--auth=trust", "--no-instructions"]), capture_output=True, text=True)
            if res.returncode != 0:
                raise ServiceError(f"initdb failed: {res.stderr.strip()[-2000:]}")
        self._spawn(self._as_owner(
            [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sock}",
             "-c", "fsync=off", "-c", "max_connections=200"]),
            self.datadir / "postgres.log")
        self._wait(self._accepting, 60)
        self._create_db()
        return self

    def _owner_reaches(self, path: Path) -> bool:
        probe = path
        while not probe.exists():
            probe = probe.parent
        return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(probe)],
                              capture_output=True).returncode == 0

    def _connect(self, dbname: str):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user,
                                dbname=dbname, connect_timeout=3)

    def _accepting(self) -> bool:
        try:
            self._connect("postgres").close()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def _create_db(self) -> None:
        conn = self._connect("postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{self.dbname}"')
        conn.close()

    def stop(self, timeout: float = 60) -> None:
        if self.proc is not None and self.proc.poll() is None and self.bin is not None:
            # a fast shutdown (rolls back open transactions, closes clients) as pg_ctl does it
            subprocess.run(self._as_owner([str(self.bin / "pg_ctl"), "-D",
                                           str(self.datadir / "data"), "-m", "fast", "-w",
                                           "stop"]), capture_output=True, timeout=timeout)
        super().stop(timeout)
        if self.cleanup:
            shutil.rmtree(self.datadir, ignore_errors=True)


def check_db(url: str, timeout: float = 5) -> str | None:
    """None if the metadata database at ``url`` answers, else a message for people
    that names where it looked (password hidden) and what to do."""
    u = urlparse(url)
    if not u.scheme.startswith("postgresql"):
        return None
    shown = f"{u.scheme}://{u.username + '@' if u.username else ''}{u.hostname}:{u.port or 5432}{u.path}"
    try:
        import psycopg2

        psycopg2.connect(host=u.hostname, port=u.port or 5432, user=u.username,
                         password=u.password, dbname=(u.path or "/").lstrip("/") or None,
                         connect_timeout=int(timeout)).close()
        return None
    except Exception as exc:  # noqa: BLE001 - psycopg2.OperationalError and DNS errors alike
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return (f"the Airflow metadata database at {shown} is not reachable ({reason}). "
                "Start PostgreSQL there, or unset DATAMILL_AIRFLOW_DB_URL to let `make airflow` "
                "start a local one (DATAMILL_AIRFLOW_DB=postgres), or use the SQLite default.")


# -- Spark Connect ------------------------------------------------------------------
def connect_conf(port: int, host: str = "127.0.0.1", driver_memory: str = "2g",
                 extra: dict[str, str] | None = None) -> dict[str, str]:
    """Server-side conf: the local session's small-data defaults, Delta, the gRPC port."""
    from importlib.metadata import version

    from spark_jobs.session import LOCAL_CONF, delta_jars

    conf = dict(LOCAL_CONF, **{
        "spark.connect.grpc.binding.port": str(port),
        "spark.connect.grpc.binding.address": host,
        "spark.driver.memory": driver_memory,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    })
    jars = delta_jars()
    if jars:
        conf["spark.jars"] = ",".join(jars)
    else:  # no cached jars: let Ivy resolve them into the project's cache
        conf.update({"spark.jars.ivy": str(IVY_DIR), "spark.jars.packages":
                     f"io.delta:delta-spark_4.2_2.13:{version('delta-spark')}"})
    conf.update(extra or {})
    return conf


class SparkConnectServer(_Process):
    name = "Spark Connect server"

    def __init__(self, workdir: str | Path, port: int | None = None, host: str = "127.0.0.1",
                 master: str = "local[*]", driver_memory: str = "2g",
                 conf: dict[str, str] | None = None, start_timeout: float = 240):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.host, self.master = host, master
        self.conf = connect_conf(self.port, host, driver_memory, conf)
        self.start_timeout = start_timeout

    @property
    def url(self) -> str:
        return f"sc://{'127.0.0.1' if self.host in ('0.0.0.0', '') else self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", self.master,
               "--class", CONNECT_CLASS, "--name", "datamill-connect"]
        for k, v in self.conf.items():
            cmd += ["--conf", f"{k}={v}"]
        return cmd

    def start(self) -> "SparkConnectServer":
        if _listening(self.port):
            raise ServiceError(f"port {self.port} is already in use: another Spark Connect "
                               "server? (set DATAMILL_SPARK_CONNECT_PORT)")
        env = dict(os.environ, PYSPARK_PYTHON=sys.executable)
        self._spawn(self.command(), self.workdir / "spark-connect.log", env)
        self._wait(lambda: _listening(self.port), self.start_timeout)
        return self


# -- Ray ------------------------------------------------------------------------------
class RayHead(_Process):
    name = "Ray head"

    def __init__(self, workdir: str | Path, port: int | None = None, num_cpus: int = 2,
                 object_store_mb: int = 1024, start_timeout: float = 120):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.num_cpus, self.object_store_mb = num_cpus, object_store_mb
        self.start_timeout = start_timeout
        # Unix socket paths must stay short (107 bytes): a short temp dir of its own.
        self.temp_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"dmray{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "RayHead":
        if _listening(self.port):
            raise ServiceError(f"port {self.port} is already in use: another Ray head? "
                               "(set DATAMILL_RAY_PORT)")
        ports = {"--ray-client-server-port": free_port(), "--node-manager-port": free_port(),
                 "--object-manager-port": free_port(), "--metrics-export-port": free_port(),
                 "--dashboard-agent-listen-port": free_port(),
                 "--dashboard-agent-grpc-port": free_port(),
                 "--runtime-env-agent-port": free_port()}
        cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
               "--port", str(self.port), "--node-ip-address", "127.0.0.1",
               "--num-cpus", str(self.num_cpus),
               "--object-store-memory", str(self.object_store_mb << 20),
               "--include-dashboard", "false", "--disable-usage-stats",
               "--temp-dir", str(self.temp_dir)]
        for k, v in ports.items():
            cmd += [k, str(v)]
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        # Workers import the project like the driver does (the editable install
        # covers it; PYTHONPATH keeps a plain checkout working too).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                          env.get("PYTHONPATH", "")]))
        self._spawn(cmd, self.workdir / "ray-head.log", env)
        self._wait(lambda: _listening(self.port), self.start_timeout)
        return self

    def stop(self, timeout: float = 60) -> None:
        super().stop(timeout)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# -- the supervisor behind `make airflow` --------------------------------------------
def airflow_env(pg: LocalPostgres | None, spark: SparkConnectServer | None,
                ray: RayHead | None) -> dict[str, str]:
    """Environment pointing Airflow and the tasks at the running services."""
    env: dict[str, str] = {}
    if pg is not None:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = pg.url
    if spark is not None:
        env["AIRFLOW_CONN_DATAMILL_SPARK"] = json.dumps(
            {"conn_type": "spark_connect", "host": "127.0.0.1", "port": spark.port,
             "description": "the warm Spark Connect server of make airflow"})
    if ray is not None:
        env["AIRFLOW_CONN_DATAMILL_RAY"] = json.dumps(
            {"conn_type": "ray", "host": "127.0.0.1", "port": ray.port,
             "description": "the warm Ray head of make airflow"})
    return env


def _serve(args) -> int:
    workdir = Path(args.workdir)
    started: list[_Process] = []
    stop = {"now": False}

    def _on_signal(signum, frame):  # noqa: ARG001
        stop["now"] = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    pg = spark = ray = None
    try:
        if args.postgres:
            pg = LocalPostgres(args.postgres, port=args.postgres_port).start()
            started.append(pg)
            print(f"[services] PostgreSQL on 127.0.0.1:{pg.port} ({pg.datadir})", flush=True)
        if args.spark_connect:
            spark = SparkConnectServer(workdir, port=args.spark_connect_port,
                                       driver_memory=args.spark_driver_memory).start()
            started.append(spark)
            print(f"[services] Spark Connect at {spark.url} (log {spark.log})", flush=True)
        if args.ray:
            ray = RayHead(workdir, port=args.ray_port, num_cpus=args.ray_cpus).start()
            started.append(ray)
            print(f"[services] Ray head at {ray.address} (log {ray.log})", flush=True)
        env = airflow_env(pg, spark, ray)
        tmp = Path(args.env_file + ".tmp")
        tmp.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        tmp.replace(args.env_file)
        while not stop["now"]:
            for s in started:
                if s.proc is not None and s.proc.poll() is not None:
                    print(f"[services] {s.name} exited with {s.proc.returncode}:\n"
                          f"{_tail(s.log)}", file=sys.stderr, flush=True)
                    return 1
            time.sleep(1)
        return 0
    except ServiceError as exc:
        print(f"[services] {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for s in reversed(started):
            s.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m include.local_services",
                                 description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="start services, write their env, stop them on SIGTERM")
    s.add_argument("--workdir", required=True, help="logs and Ray's temp files")
    s.add_argument("--env-file", required=True)
    s.add_argument("--postgres", metavar="DIR", help="run a local PostgreSQL on this data folder")
    s.add_argument("--postgres-port", type=int, default=None)
    s.add_argument("--spark-connect", action="store_true")
    s.add_argument("--spark-connect-port", type=int, default=None)
    s.add_argument("--spark-driver-memory", default="3g")
    s.add_argument("--ray", action="store_true")
    s.add_argument("--ray-port", type=int, default=None)
    s.add_argument("--ray-cpus", type=int, default=2)
    c = sub.add_parser("check-db", help="exit 1 with a clear message if the database is down")
    c.add_argument("url")
    k = sub.add_parser("spark-connect", help="run the Spark Connect server in the foreground "
                       "(docker-compose's spark-connect service)")
    k.add_argument("--master", default="local[*]")
    k.add_argument("--host", default="127.0.0.1")
    k.add_argument("--port", type=int, default=15002)
    k.add_argument("--driver-memory", default="2g")
    args = ap.parse_args(argv)
    if args.cmd == "spark-connect":
        server = SparkConnectServer(".", port=args.port, host=args.host, master=args.master,
                                    driver_memory=args.driver_memory)
        os.environ["PYSPARK_PYTHON"] = sys.executable
        cmd = server.command()
        os.execv(cmd[0], cmd)  # the JVM takes this process's place (signals reach it)
    if args.cmd == "check-db":
        msg = check_db(args.url)
        if msg:
            print(f"datamill: {msg}", file=sys.stderr)
            return 1
        return 0
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
