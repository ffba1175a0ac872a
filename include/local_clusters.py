"""Real multi-process clusters on one machine, for scale-out tests and benchmarks.

- :class:`SparkStandalone`: a Spark standalone master and one worker, each its
  own JVM started with pyspark's ``spark-class`` (the pyspark wheel has no
  ``sbin/start-master.sh``; ``spark-class`` runs the same main classes,
  ``org.apache.spark.deploy.master.Master`` and ``...worker.Worker``). Point a
  run at it with ``DATAMILL_SPARK_URL=spark://127.0.0.1:<port>`` (``.url``):
  the driver stays in the client, executors run in the worker.
- :class:`RayCluster`: a Ray head (``include.local_services.RayHead``,
  ``ray start --head --block`` with every port free) plus a worker node
  (``ray start --address ... --block``), i.e. two raylets; runs attach with
  ``DATAMILL_RAY_ADDRESS=<.address>`` (plus :func:`ray_auth_env`).

Each process is a child in its own session, stopped by process group, never
with ``ray stop`` or ``stop-all.sh`` (which stop every cluster on the machine).
Engine-side code: no Airflow imports.
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

from include.config import PROJECT_ROOT
from include.local_services import RayHead, ServiceError, _listening, _Process, free_port

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def _spark_class() -> str:
    return str(Path(sys.executable).parent / "spark-class")


def _project_env() -> dict[str, str]:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # Executors and Ray workers import the project like the driver does.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def ray_auth_env() -> dict[str, str]:
    """What a process joining a ``ray start --head`` cluster of this machine needs.

    The head turns token authentication on by itself when a token exists (Ray
    2.60: ``RAY_AUTH_MODE`` unset and ``~/.ray/auth_token``, which any local
    ``ray.init()`` creates); ``ray start --address`` and ``ray.init(address=...)``
    do not, and the head's GCS then refuses them. Mirror the head's choice.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return {}
    token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
             or (Path.home() / ".ray" / "auth_token").is_file())
    return {"RAY_AUTH_MODE": "token"} if token else {}


class _JavaDaemon(_Process):
    def __init__(self, name: str, args: list[str], log: Path, ready, timeout: float):
        self.name, self.args, self.log_path = name, args, log
        self.ready, self.timeout = ready, timeout

    def start(self):
        self._spawn([_spark_class(), *self.args], self.log_path, _project_env())
        self._wait(self.ready, self.timeout)
        return self


class SparkStandalone:
    """A standalone master and one worker with ``cores`` cores and ``memory``."""

    def __init__(self, workdir: str | Path, cores: int = 1, memory: str = "1g",
                 start_timeout: float = 240):
        self.workdir = Path(workdir)
        self.port, self.ui_port = free_port(), free_port()
        self.worker_ui_port = free_port()
        self.cores, self.memory, self.start_timeout = cores, memory, start_timeout
        self.master: _JavaDaemon | None = None
        self.worker: _JavaDaemon | None = None

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def state(self) -> dict:
        """The master's JSON status (workers, applications)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
            return json.loads(r.read())

    def _workers_alive(self) -> bool:
        try:
            return self.state().get("aliveworkers", 0) >= 1
        except OSError:
            return False

    def start(self) -> "SparkStandalone":
        self.master = _JavaDaemon(
            "Spark master", [MASTER_CLASS, "--host", "127.0.0.1", "--port", str(self.port),
                             "--webui-port", str(self.ui_port)],
            self.workdir / "spark-master.log", lambda: _listening(self.port), self.start_timeout)
        self.master.start()
        work = self.workdir / "spark-worker"
        work.mkdir(parents=True, exist_ok=True)
        self.worker = _JavaDaemon(
            "Spark worker", [WORKER_CLASS, self.url, "--host", "127.0.0.1", "--cores",
                             str(self.cores), "--memory", self.memory, "--webui-port",
                             str(self.worker_ui_port), "--work-dir", str(work)],
            self.workdir / "spark-worker.log", self._workers_alive, self.start_timeout)
        try:
            self.worker.start()
        except ServiceError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for d in (self.worker, self.master):
            if d is not None:
                d.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _RayWorkerNode(_Process):
    name = "Ray worker node"

    def __init__(self, head: RayHead, num_cpus: int, object_store_mb: int, log: Path,
                 timeout: float):
        self.head, self.num_cpus, self.object_store_mb = head, num_cpus, object_store_mb
        self.log_path, self.timeout = log, timeout

    def start(self):
        ports = {"--node-manager-port": free_port(), "--object-manager-port": free_port(),
                 "--metrics-export-port": free_port(),
                 "--dashboard-agent-listen-port": free_port(),
                 "--dashboard-agent-grpc-port": free_port(),
                 "--runtime-env-agent-port": free_port()}
        cmd = [str(Path(sys.executable).parent / "ray"), "start", "--block",
               "--address", self.head.address, "--node-ip-address", "127.0.0.1",
               "--num-cpus", str(self.num_cpus),
               "--object-store-memory", str(self.object_store_mb << 20),
               "--disable-usage-stats"]
        for k, v in ports.items():
            cmd += [k, str(v)]
        env = dict(_project_env(), RAY_USAGE_STATS_ENABLED="0", **ray_auth_env())
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._spawn(cmd, self.log_path, env)

        def started() -> bool:  # `ray start` says so once its raylet has joined the GCS
            with open(self.log_path, "rb") as fh:
                fh.seek(start)
                return b"Ray runtime started" in fh.read()
        self._wait(started, self.timeout)
        return self


class RayCluster:
    """A Ray head and one worker node (two raylets) on this machine."""

    def __init__(self, workdir: str | Path, head_cpus: int = 1, worker_cpus: int = 1,
                 object_store_mb: int = 256, start_timeout: float = 180):
        self.workdir = Path(workdir)
        self.head = RayHead(self.workdir, num_cpus=head_cpus, object_store_mb=object_store_mb,
                            start_timeout=start_timeout)
        self.worker = _RayWorkerNode(self.head, worker_cpus, object_store_mb,
                                     self.workdir / "ray-worker.log", start_timeout)

    @property
    def address(self) -> str:
        return self.head.address

    @staticmethod
    def alive_nodes(head: RayHead) -> int:
        """Alive nodes as the GCS reports them (``ray status`` would need the dashboard)."""
        import subprocess

        code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))")
        try:
            out = subprocess.run([sys.executable, "-c", code, head.address], capture_output=True,
                                 text=True, timeout=300, env={**_project_env(), **ray_auth_env()})
            return int(out.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, ValueError, IndexError):
            return 0

    def start(self) -> "RayCluster":
        self.head.start()
        try:
            time.sleep(1)
            self.worker.start()
        except ServiceError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.worker.stop()
        self.head.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
