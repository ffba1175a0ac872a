"""docker/ checked statically (no Docker engine runs on these machines).

The compose file parses and has Airflow 3's official services plus the
engines; every build context, Dockerfile, bind mount and COPY source it names
exists; every ``AIRFLOW__SECTION__KEY`` it or the Dockerfile sets is a real
Airflow setting (Airflow's own configuration description, providers
included); the engine connections name services that exist; every
``${VAR}`` is given a default or is in ``.env.example``; ``.env`` is ignored
by git; the versions agree with the lock file (or, until there is one, the
pyproject pins); and the ``ray start`` flags the services pass exist.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
AIRFLOW_SERVICES = {"postgres", "redis", "airflow-apiserver", "airflow-scheduler",
                    "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "airflow-init"}
ENGINE_SERVICES = {"spark-master", "spark-worker", "spark-connect", "ray-head", "ray-worker",
                   "vllm"}
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _pins() -> dict[str, str]:
    """name -> version: the lock file when there is one, else pyproject's == pins."""
    lock = ROOT / "requirements.lock"
    lines = lock.read_text().splitlines() if lock.is_file() else \
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(3)
    return pins


def _env_items(compose: dict):
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        for k, v in env.items():
            yield name, k, v


def test_compose_has_the_official_layout_and_the_engines(compose):
    services = compose["services"]
    assert AIRFLOW_SERVICES | ENGINE_SERVICES <= set(services)
    assert services["airflow-worker"]["command"][:3] == ["airflow", "celery", "worker"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                 "airflow-triggerer", "airflow-worker"):
        dep = services[name]["depends_on"]
        assert dep["airflow-init"]["condition"] == "service_completed_successfully"
        assert dep["postgres"]["condition"] == "service_healthy" and "healthcheck" in services[name]
    assert services["vllm"]["profiles"] == ["gpu"]
    assert services["vllm"]["entrypoint"] == ["vllm", "serve"]
    assert services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    # Connect and Ray have no authentication: never published to the host.
    for name in ("spark-connect", "ray-head", "spark-master", "vllm"):
        assert "ports" not in services[name], name
    # One image for every datamill service: same Python, pyspark and Ray everywhere.
    image = services["airflow-scheduler"]["image"]
    for name in AIRFLOW_SERVICES - {"postgres", "redis"} | ENGINE_SERVICES - {"vllm"}:
        assert services[name]["image"] == image, name
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"


def test_every_named_file_exists(compose):
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            ctx = (DOCKER / build["context"]).resolve()
            assert ctx.is_dir() and (ctx / build["dockerfile"]).is_file(), name
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                assert (DOCKER / src).resolve().exists(), (name, vol)
    # COPY sources of the Dockerfile (the context is the repo root), and its entrypoint.
    for line in DOCKERFILE.read_text().splitlines():
        m = re.match(r"^COPY\s+(?!--from)(?:--\S+\s+)*(.+)\s+\S+$", line.strip())
        if m:
            for src in m.group(1).split():
                assert "*" in src or (ROOT / src).exists(), src
    entry = ROOT / "docker/entrypoint.sh"
    assert entry.is_file() and entry.stat().st_mode & 0o111
    assert subprocess.run(["bash", "-n", str(entry)]).returncode == 0
    assert (DOCKER / "Dockerfile.dockerignore").is_file()


def test_airflow_settings_are_real(compose):
    from airflow.configuration import conf

    described = conf.configuration_description  # core + every installed provider's config
    names = [k for _, k, _ in _env_items(compose) if k.startswith("AIRFLOW__")]
    names += re.findall(r"\b(AIRFLOW__[A-Z0-9_]+__[A-Z0-9_]+)=", DOCKERFILE.read_text())
    assert len(names) >= 15
    for name in set(names):
        section, key = name[len("AIRFLOW__"):].split("__", 1)
        options = described.get(section.lower(), {}).get("options", {})
        assert key.lower() in options, f"{name} is not an Airflow setting"
    env = {k: v for _, k, v in _env_items(compose)}
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    transport = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport["type"] == "file" and transport["log_file_path"].startswith(env["DATAMILL_LAKE"])


def test_engine_connections_name_services(compose):
    env = {k: v for _, k, v in _env_items(compose)}
    conns = {k[len("AIRFLOW_CONN_"):].lower(): json.loads(VAR.sub("x", v))
             for k, v in env.items() if k.startswith("AIRFLOW_CONN_")}
    assert set(conns) == {"datamill_spark", "datamill_ray", "datamill_llm"}
    services = compose["services"]
    spark = conns["datamill_spark"]
    assert spark["conn_type"] == "spark_connect" and spark["host"] in services
    assert "--port" in services["spark-connect"]["command"]
    assert str(spark["port"]) == services["spark-connect"]["command"][
        services["spark-connect"]["command"].index("--port") + 1]
    ray = conns["datamill_ray"]
    assert ray["host"] == "ray://ray-head" and str(ray["port"]) in services["ray-head"]["command"]
    llm = conns["datamill_llm"]
    assert llm["host"] == "vllm" and llm["extra"]["model"] in services["vllm"]["command"]


def test_secrets_come_from_an_ignored_env_file():
    example = DOCKER / ".env.example"
    declared = {line.split("=", 1)[0] for line in example.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    text = COMPOSE.read_text()
    for name, rule in VAR.findall(text):
        if not rule.startswith((":-", "-")):  # no default: the user must provide it
            assert name in declared, f"${{{name}}} has no default and is not in .env.example"
    for secret in ("POSTGRES_PASSWORD", "AIRFLOW__CORE__FERNET_KEY",
                   "AIRFLOW__API_AUTH__JWT_SECRET", "DATAMILL_ADMIN_PASSWORD", "VLLM_API_KEY"):
        assert f"${{{secret}:?" in text or f"${{{secret}:-}}" in text, secret
        assert secret in declared
    assert not re.search(r"(PASSWORD|SECRET|KEY)\s*:\s*['\"]?[A-Za-z0-9]{8,}", text)
    if (ROOT / ".git").exists() and shutil.which("git"):
        ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=ROOT)
        assert ignored.returncode == 0, "docker/.env must be git-ignored"


def test_versions_match_the_lock_file(compose):
    pins = _pins()
    text = DOCKERFILE.read_text()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    py = re.search(r"ARG PYTHON_VERSION=(\d+\.\d+)", text).group(1)
    assert f">={py}" in requires and py == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert "openjdk-17-jre-headless" in text
    if (ROOT / "requirements.lock").is_file():
        assert "requirements.lock" in text
    for name in ("apache-airflow", "pyspark", "ray", "delta-spark"):
        assert name in pins, name
    # The engines run the project image, so their Ray/pyspark are the pinned ones; the
    # versions installed here (what the tests run) are those pins too.
    from importlib.metadata import version

    for name in ("apache-airflow", "pyspark", "ray", "delta-spark",
                 "apache-airflow-providers-celery", "apache-airflow-providers-openlineage"):
        assert version(name) == pins[name], name
    vllm_tag = compose["services"]["vllm"]["image"].rsplit(":", 1)[1]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", vllm_tag), "pin the vLLM image to a release"
    if "vllm" in pins:
        assert vllm_tag == f"v{pins['vllm']}"
    assert compose["services"]["postgres"]["image"] == "postgres:16"


def test_engine_commands_use_real_flags(compose):
    services = compose["services"]
    ray_help = subprocess.run([str(Path(sys.executable).parent / "ray"), "start", "--help"],
                              capture_output=True, text=True, timeout=120).stdout
    for name in ("ray-head", "ray-worker"):
        for flag in (a for a in services[name]["command"] if a.startswith("--")):
            assert f"{flag} " in ray_help or f"{flag}\n" in ray_help, (name, flag)
    cmd = services["spark-connect"]["command"]
    assert cmd[:4] == ["python", "-m", "include.local_services", "spark-connect"]
    res = subprocess.run([sys.executable, "-m", "include.local_services", *cmd[3:], "--help"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    for flag in (a for a in cmd if a.startswith("--")):
        assert flag in res.stdout, flag
