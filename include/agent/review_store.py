"""The one review store: agent-made pipelines (and generated ops) waiting for a person.

The CLI (``datamill review``), the Airflow HITL DAG (``datamill__agent``) and
the plugin's "Data agent" page all use this class, so an item approved in one
place is approved in the others. Items are plain files, so a reviewer can also
read them with an editor or ``git diff``::

    $DATAMILL_REVIEW_DIR/              (default: review/ in the project)
      <name>/                          one item per pipeline name
        item.json                      status, request, history, approvals, flags
        spec.yaml  dag.py  plan.md  dry_run.json   the latest round
        rounds/001/ ...                every round's files, as they were
      op-<name>/                       a generated op (``datamill op new``)
        item.json  <name>.py  test_<name>.py  checks.json
      .plans/<sha>.json                planner states stashed by ``datamill plan``
                                       for ``datamill render`` (keyed by spec text)
      .lock

Nothing in the review folder is live. ``approve`` copies the spec into
``$DATAMILL_PIPELINES_DIR`` (default ``include/pipelines/``), where the DAG
factory builds it; it refuses a name that a live pipeline it did not publish
already uses, and a source outside the data roots unless the reviewer
confirms it. For an op item it reruns the static checks, runs the op's tests
and only then registers it in the generated-ops folder.

Concurrency: the api-server, a DAG task and the CLI may touch the store at
once. Every change takes an exclusive ``fcntl`` lock on ``.lock`` (the store
is on one machine's disk, like the DAG folder; stdlib, no extra package) and
every file is written to a temporary name and renamed into place, so readers,
which take no lock, never see half a file.
"""
from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import yaml

from include.config import PROJECT_ROOT

STATUSES = ("draft", "approved", "rejected")
ITEM_RE = re.compile(r"^(op-)?[a-z][a-z0-9_]{0,62}$")
ROUND_FILES = ("spec.yaml", "dag.py", "plan.md", "dry_run.json")


class ReviewError(ValueError):
    """A review action that cannot be done (unknown item, clash, wrong status)."""


def review_dir() -> Path:
    return Path(os.environ.get("DATAMILL_REVIEW_DIR") or PROJECT_ROOT / "review")


def live_dir() -> Path:
    from include.pipelines_catalog import pipelines_dir

    return pipelines_dir()


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that no reader sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def spec_digest(spec_yaml: str) -> str:
    return hashlib.sha256(spec_yaml.encode("utf-8")).hexdigest()[:20]


def spec_diff(old: str | None, new: str, old_label: str = "previous",
              new_label: str = "this round") -> str:
    """Unified diff between two spec YAML texts ('' for the first round)."""
    if old is None:
        return ""
    return "".join(difflib.unified_diff(old.splitlines(keepends=True),
                                        new.splitlines(keepends=True),
                                        fromfile=old_label, tofile=new_label))


class ReviewStore:
    """Review items under ``root`` (default ``$DATAMILL_REVIEW_DIR`` or ``review/``)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else review_dir()

    # -- locking and paths ---------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def path(self, name: str) -> Path:
        if not isinstance(name, str) or not ITEM_RE.match(name):
            raise ReviewError(f"no review item {name!r}: item names are lower-case letters, "
                              "digits and _ (op items start with 'op-')")
        return self.root / name

    def _item(self, name: str) -> dict[str, Any]:
        p = self.path(name) / "item.json"
        if not p.is_file():
            known = ", ".join(i["name"] for i in self.list()) or "none"
            raise ReviewError(f"no review item {name!r} in {self.root} (items: {known})")
        return json.loads(p.read_text(encoding="utf-8"))

    def _write_item(self, name: str, item: dict[str, Any]) -> None:
        item["updated"] = now_iso()
        atomic_write(self.path(name) / "item.json", json.dumps(item, indent=2, sort_keys=True,
                                                               default=str) + "\n")

    # -- reading ---------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        """One summary per item, newest first: name, kind, status, rounds, updated, request."""
        out = []
        if not self.root.is_dir():
            return out
        for p in self.root.iterdir():
            f = p / "item.json"
            if not (p.is_dir() and ITEM_RE.match(p.name) and f.is_file()):
                continue
            try:
                item = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            out.append({"name": p.name, "kind": item.get("kind", "pipeline"),
                        "status": item.get("status"), "rounds": len(item.get("history", [])),
                        "updated": item.get("updated"),
                        "request": (item.get("request") or "")[:200],
                        "dag_id": item.get("dag_id")})
        return sorted(out, key=lambda i: (i["updated"] or "", i["name"]), reverse=True)

    def exists(self, name: str) -> bool:
        try:
            return (self.path(name) / "item.json").is_file()
        except ReviewError:
            return False

    def get(self, name: str) -> dict[str, Any]:
        """Everything about an item: status, request, history (per round: request or
        feedback, spec YAML, diff vs the previous round, ts), the latest files
        (``spec_yaml``, ``spec``, ``dag_py``, ``plan_md``, ``dry_run``), approvals
        and rejections (who, when, feedback), flags and the item's path."""
        item = self._item(name)
        d = self.path(name)
        out = dict(item)
        out["name"] = name
        out["path"] = str(d)

        def read(fname: str) -> str | None:
            f = d / fname
            return f.read_text(encoding="utf-8") if f.is_file() else None

        if item.get("kind", "pipeline") == "pipeline":
            out["spec_yaml"] = read("spec.yaml")
            out["spec"] = yaml.safe_load(out["spec_yaml"]) if out["spec_yaml"] else None
            out["dag_py"] = read("dag.py")
            out["plan_md"] = read("plan.md")
            dr = read("dry_run.json")
            out["dry_run"] = json.loads(dr) if dr else None
        else:
            op = item["op_name"]
            out["module_py"] = read(f"{op}.py")
            out["test_py"] = read(f"test_{op}.py")
            out["plan_md"] = read("plan.md")
        return out

    def spec_path(self, name: str) -> Path:
        """The latest spec file of a pipeline item (input for ``plan(from_spec=...)``)."""
        self._item(name)
        return self.path(name) / "spec.yaml"

    # -- writing rounds ----------------------------------------------------------
    def save_round(self, state: dict[str, Any]) -> Path:
        """Write the planner state's spec, DAG file, plan.md and dry run as a new
        round of the item named by the spec; returns the item's folder.

        A new round of an approved or rejected item makes it a draft again (a
        revision); the live spec, if any, stays as it was until approved."""
        if state.get("status") != "ok" or not state.get("valid"):
            raise ReviewError("only a validated plan can go to review: "
                              + "; ".join(state.get("errors") or [state.get("refusal") or "?"]))
        rendered = state.get("rendered") or {}
        spec_yaml = rendered.get("spec_yaml")
        if not spec_yaml:
            raise ReviewError("the state has no rendered spec (run the render step first)")
        name = state["spec"]["name"]
        d = self.path(name)
        with self._locked():
            item = self._item(name) if (d / "item.json").is_file() else {
                "kind": "pipeline", "name": name, "dag_id": f"datamill__{name}",
                "created": now_iso(), "history": [], "approvals": [], "rejections": [],
                "request": state.get("request")}
            history = item["history"]
            prev_yaml = None
            if history:
                prev = d / "rounds" / f"{len(history):03d}" / "spec.yaml"
                prev_yaml = prev.read_text(encoding="utf-8") if prev.is_file() else None
            n = len(history) + 1
            rdir = d / "rounds" / f"{n:03d}"
            files = {"spec.yaml": spec_yaml, "dag.py": rendered.get("dag_py", ""),
                     "plan.md": rendered.get("plan_md", ""),
                     "dry_run.json": json.dumps(state.get("dry_run") or {}, indent=2,
                                                default=str) + "\n"}
            slim = {k: v for k, v in state.items() if k != "rendered"}
            atomic_write(rdir / "state.json", json.dumps(slim, indent=2, default=str) + "\n")
            for fname, text in files.items():
                atomic_write(rdir / fname, text)
            for fname, text in files.items():
                atomic_write(d / fname, text)
            history.append({
                "round": n, "ts": now_iso(),
                "kind": "feedback" if state.get("feedback") else "request",
                "request": state.get("request"), "feedback": state.get("feedback"),
                "llm": state.get("llm"), "repair_rounds": state.get("rounds_used"),
                "spec_yaml": spec_yaml, "spec_sha": spec_digest(spec_yaml),
                "diff": spec_diff(prev_yaml, spec_yaml, f"round {n - 1}", f"round {n}"),
                "dry_run": (state.get("dry_run") or {}).get("status")})
            if not item.get("request"):
                item["request"] = state.get("request")
            item["status"] = "draft"
            item["flags"] = state.get("flags") or []
            item["confirm_needed"] = [f["message"] for f in item["flags"]
                                      if isinstance(f, dict) and f.get("confirm")]
            self._write_item(name, item)
        return d

    # -- decisions -------------------------------------------------------------
    def approve(self, name: str, by: str, *, confirm_source: bool = False,
                note: str | None = None, expected_round: int | None = None) -> Path:
        """Publish an item: a pipeline's spec is copied into the live pipelines
        folder (returned), an op is checked, tested and registered.

        Refused (``ReviewError``): an unknown or already-decided item, a spec that
        no longer validates, a name or output table a live pipeline not
        published by this item already uses, and a flagged source path
        (outside the data roots) unless ``confirm_source``, and an item no longer
        at ``expected_round`` (the round the reviewer read: a revision saved
        meanwhile must be read before it can be approved)."""
        if not by or not str(by).strip():
            raise ReviewError("approve needs the reviewer's name (by=...)")
        with self._locked():
            item = self._item(name)
            check_round(name, item, expected_round)
            if item.get("status") != "draft":
                raise ReviewError(f"item {name!r} is {item.get('status')}; only a draft can be "
                                  "approved (revise it to make a new draft)")
            if item.get("kind") == "op":
                from include.agent import opgen

                target = opgen.publish(self.path(name), item)
            else:
                target = self._publish_pipeline(name, item, confirm_source)
            item["status"] = "approved"
            item["approvals"].append({"by": str(by), "ts": now_iso(), "path": str(target),
                                      "round": len(item.get("history", [])),
                                      "confirmed_source": bool(confirm_source),
                                      "note": note})
            self._write_item(name, item)
        return target

    def _publish_pipeline(self, name: str, item: dict[str, Any], confirm_source: bool) -> Path:
        from include.spec import SpecError, parse

        d = self.path(name)
        spec_yaml = (d / "spec.yaml").read_text(encoding="utf-8")
        raw = yaml.safe_load(spec_yaml)
        try:
            parse(raw, str(d / "spec.yaml"))
        except SpecError as exc:
            raise ReviewError(f"item {name!r} no longer validates: {exc}") from None
        if raw.get("name") != name:
            raise ReviewError(f"item {name!r} holds a spec named {raw.get('name')!r}")
        if item.get("confirm_needed") and not confirm_source:
            raise ReviewError(f"item {name!r} needs explicit confirmation before approval: "
                              + "; ".join(item["confirm_needed"])
                              + " (approve with --confirm-source once you have checked it)")
        live = live_dir()
        target = live / f"{name}.yaml"
        published = {a.get("path") for a in item.get("approvals", [])}
        from include.pipelines_catalog import read_raw, spec_files

        for path in spec_files(live):
            other = read_raw(path) or {}
            mine = str(path) in published and path == target
            if mine:
                continue
            if other.get("name") == name or path.stem == name:
                raise ReviewError(f"a live pipeline named {name!r} already exists ({path}); "
                                  "plan again with another --name")
            if (other.get("output") or {}).get("table") == (raw.get("output") or {}).get("table"):
                raise ReviewError(f"live pipeline {other.get('name')!r} ({path}) already "
                                  f"writes {raw['output']['table']!r}; choose another output table")
        live.mkdir(parents=True, exist_ok=True)
        atomic_write(target, spec_yaml)
        return target

    def reject(self, name: str, by: str, feedback: str | None = None,
               expected_round: int | None = None) -> dict[str, Any]:
        """Close an item without publishing; it stays with its feedback, and a
        revision (``plan --from <item spec> --feedback ...``) makes a new draft."""
        if not by or not str(by).strip():
            raise ReviewError("reject needs the reviewer's name (by=...)")
        with self._locked():
            item = self._item(name)
            check_round(name, item, expected_round)
            if item.get("status") == "approved":
                raise ReviewError(f"item {name!r} is already approved and live; revise it "
                                  "instead")
            item["status"] = "rejected"
            item.setdefault("rejections", []).append(
                {"by": str(by), "ts": now_iso(), "feedback": feedback,
                 "round": len(item.get("history", []))})
            self._write_item(name, item)
        return self.get(name)

    def feedback_history(self, name: str) -> list[str]:
        """Every feedback given on an item so far (rounds and rejections), oldest first."""
        item = self._item(name)
        events = [(h["ts"], h["feedback"]) for h in item.get("history", []) if h.get("feedback")]
        events += [(r["ts"], r["feedback"]) for r in item.get("rejections", []) if r.get("feedback")]
        # By time only (a stable sort): timestamps have whole seconds, and two
        # rounds in one second must keep their order, not the texts' order.
        return [f for _, f in sorted(events, key=lambda e: e[0])]

    # -- generated ops -----------------------------------------------------------
    def save_op(self, draft: dict[str, Any]) -> Path:
        """Store a generated op draft (``opgen.draft_op``) as item ``op-<name>``."""
        name = draft["name"]
        d = self.path(f"op-{name}")
        with self._locked():
            item = self._item(f"op-{name}") if (d / "item.json").is_file() else {
                "kind": "op", "op_name": name, "created": now_iso(), "history": [],
                "approvals": [], "rejections": [], "request": draft["description"]}
            if item.get("status") == "approved":
                raise ReviewError(f"op {name!r} is already approved; describe a new op name")
            files = {f"{name}.py": draft["module"], f"test_{name}.py": draft["test"],
                     "checks.json": json.dumps(draft["checks"], indent=2) + "\n",
                     "plan.md": draft["plan_md"]}
            n = len(item["history"]) + 1
            for fname, text in files.items():
                atomic_write(d / fname, text)
                atomic_write(d / "rounds" / f"{n:03d}" / fname, text)
            item["history"].append({"round": n, "ts": now_iso(), "request": draft["description"],
                                    "mode": draft["mode"], "checks_ok": draft["checks"]["ok"]})
            item["status"] = "draft"
            item["checks"] = draft["checks"]
            self._write_item(f"op-{name}", item)
        return d

    # -- plan states for ``datamill render`` -----------------------------------------
    def stash_state(self, state: dict[str, Any]) -> Path:
        """Remember a planner state under the hash of its spec text, so that
        ``datamill render SPEC`` finds the request, retrieval and dry run behind it."""
        spec_yaml = state["rendered"]["spec_yaml"]
        p = self.root / ".plans" / f"{spec_digest(spec_yaml)}.json"
        atomic_write(p, json.dumps(state, default=str) + "\n")
        return p

    def stashed_state(self, spec_yaml: str) -> dict[str, Any] | None:
        p = self.root / ".plans" / f"{spec_digest(spec_yaml)}.json"
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except ValueError:
            return None

    def remove(self, name: str) -> None:
        """Delete an item (tests and clean-ups; reviewers reject instead)."""
        with self._locked():
            shutil.rmtree(self.path(name), ignore_errors=True)


def check_round(name: str, item: dict[str, Any], expected: int | None) -> None:
    """Refuse a decision taken on another round than the item's current one."""
    rounds = len(item.get("history") or [])
    if expected is not None and expected != rounds:
        raise ReviewError(f"item {name!r} is at round {rounds}, not round {expected} that was "
                          "reviewed: a newer revision was saved meanwhile; read it and decide again")
