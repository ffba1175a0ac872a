"""The environment is pinned: what the code imports is declared, and the lock pins it."""
import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CODE = ("include", "operators", "spark_jobs", "ray_jobs", "training", "plugins", "dags")
# Imported only on a CUDA machine, inside a guard (the `gpu` extra, NVIDIA's images).
GPU_ONLY = {"vllm", "transformer_engine"}
LOCAL = {"include", "operators", "spark_jobs", "ray_jobs", "training", "plugins", "dags",
         "tests", "benchmarks", "datamill"}


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared():
    project = _project()
    reqs = list(project["dependencies"])
    for extra in ("dev", "bench"):
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def _locked():
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(3)
    return pins


def _imported_top_modules():
    names = set()
    for folder in CODE:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in LOCAL}


def test_every_imported_distribution_is_declared():
    declared = {canonicalize_name(r.name) for r in _declared()}
    dists = md.packages_distributions()
    undeclared = {}
    for module in sorted(_imported_top_modules()):
        owners = {canonicalize_name(d) for d in dists.get(module, [])}
        if module in GPU_ONLY or owners & declared:
            continue
        undeclared[module] = sorted(owners) or ["(not installed)"]
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_lock_pins_every_package_and_agrees_with_pyproject():
    locked = _locked()
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is declared but not in requirements.lock"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock has {req.name}=={locked[name]}, pyproject wants {req.specifier}")
    # Transitive packages are pinned too, and the lock is what this venv runs.
    assert len(locked) > 200
    drift = {n: (v, md.version(n)) for n, v in locked.items()
             if _installed(n) and md.version(n) != v}
    assert not drift, f"installed versions differ from requirements.lock: {drift}"


def _installed(name):
    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


def test_setup_installs_from_the_lock():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "-r requirements.lock" in setup
    assert re.search(r"--no-deps -e \.", setup)
