"""The steps of a training run, shared by ``datamill train`` and the Airflow DAG.

prepare tokens -> train (resuming from the run's last checkpoint) ->
evaluate -> publish (summary, plot, HTML report and the model). No Airflow
imports here.

A *run* is one training of one config on one version of its data: its
folder is ``<output.dir>/runs/<run>``, holding checkpoints, metrics, the
summary, the report and the model. The run id is the Airflow DAG run's id
inside Airflow (so a retried task resumes its own run and a new DAG run
trains afresh), and ``data-<fingerprint>`` for ``datamill train`` (the
fingerprint covers the config, each table's Delta version and the
tokenizer hash: the same command on the same data resumes or finds the run
done; new data is a new run). ``<output.dir>/latest.json`` names the last
run that finished; ``<output.dir>/model/`` is the last published model.

``train.ranks`` > 1 starts that many processes with torchrun
(``python -m torch.distributed.run --standalone``) running
``training.worker``; rank 0 logs and writes the summary.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from include.config import PROJECT_ROOT, lake_root
from training.config import ConfigError, TrainConfig, load_config

Log = Callable[[str], None]
LATEST = "latest.json"


class TrainingError(RuntimeError):
    """A training process that failed; the message carries the tail of its log."""


def prepare_tokens(cfg: TrainConfig, lake: str | Path | None = None, log: Log = print) -> dict:
    from training.data import prepare

    return prepare(cfg, lake_root(lake), log=log)


def _manifest(cfg: TrainConfig, data_dir: str | Path | None) -> dict:
    from training.data import MANIFEST, current_dir

    folder = Path(data_dir) if data_dir else current_dir(cfg)
    return {**json.loads((folder / MANIFEST).read_text()), "dir": str(folder)}


def run_dir_for(cfg: TrainConfig, data_dir: str | Path | None = None,
                run_id: str | None = None) -> tuple[str, Path]:
    """(run id, run folder) for a config, its token folder and an optional run id."""
    from training.trainer import fingerprint, run_slug

    rid = run_id or f"data-{fingerprint(cfg, _manifest(cfg, data_dir))}"
    return rid, cfg.output_dir / "runs" / run_slug(rid)


def train(cfg: TrainConfig, log: Log = print, *, data_dir: str | Path | None = None,
          run_id: str | None = None, lake: str | Path | None = None,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume) one run; returns its summary (also ``<run>/summary.json``)."""
    from training import distributed

    if cfg.train["ranks"] > 1 and distributed.world_size() == 1:
        return _launch(cfg, log, data_dir=data_dir, run_id=run_id, lake=lake, stop_after=stop_after)
    from training.trainer import Trainer

    trainer = Trainer(cfg, log=log, data_dir=data_dir, run_id=run_id, lake=lake)
    summary = trainer.run(stop_after=stop_after)
    if trainer.dist.main:
        write_summary(Path(summary["run_dir"]), summary)
    return summary


def _launch(cfg: TrainConfig, log: Log, *, data_dir, run_id, lake, stop_after) -> dict[str, Any]:
    """Run ``training.worker`` on ``train.ranks`` processes and return rank 0's summary."""
    manifest = _manifest(cfg, data_dir)
    data_dir = Path(manifest["dir"]) if not data_dir else Path(data_dir)
    lake = lake or manifest.get("lake")
    rid, run_dir = run_dir_for(cfg, data_dir, run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    raw = {**cfg.raw, "output": {**cfg.raw["output"], "dir": str(cfg.output_dir)}}
    (run_dir / "config.json").write_text(json.dumps(raw))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={cfg.train['ranks']}", "-m", "training.worker",
           "--config", str(run_dir / "config.json"), "--data-dir", str(data_dir),
           "--run-id", rid, "--lake", str(lake_root(lake))]
    if stop_after is not None:
        cmd += ["--stop-after", str(stop_after)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(cfg.train.get("threads") or 1), "PYTHONUNBUFFERED": "1"}
    log(f"train: {cfg.train['ranks']} ranks via torchrun, run {rid}")
    tail: deque[str] = deque(maxlen=60)
    with subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log(line)
    if proc.returncode != 0:
        raise TrainingError(f"torchrun exited with {proc.returncode}; last lines:\n" + "\n".join(tail))
    return json.loads((run_dir / "summary.json").read_text())


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    path = Path(run_dir) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary))
    tmp.replace(path)
    return path


def evaluate(cfg: TrainConfig, run_dir: str | Path, log: Log = print) -> dict[str, float]:
    """Per-domain loss of the run's last checkpoint on the evaluation split (``eval.json``)."""
    from training.trainer import Trainer

    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    trainer = Trainer(cfg, log=log, data_dir=summary["data_dir"], run_id=summary["run_id"])
    if not trainer.resume():
        raise ConfigError(f"no checkpoint in {run_dir}: train first")
    val = trainer.evaluate()
    (Path(run_dir) / "eval.json").write_text(json.dumps({"step": trainer.step, "split": "test",
                                                        "val_loss": val}))
    log(f"evaluate step {trainer.step}: {val}")
    return val


def publish(cfg: TrainConfig, run_dir: str | Path, log: Log = print) -> dict[str, Any]:
    """Plot, HTML report and the model of a finished run.

    The model (weights of the last checkpoint, loadable with
    ``torch.load(weights_only=True)``, its tokenizer and a ``model.json``
    naming the run, data versions and tokenizer hash) goes to
    ``<run>/model`` and replaces ``<output.dir>/model`` unless that holds a
    model of a run that started later (a retried old run never replaces a
    newer one).
    """
    import torch

    from training import checkpoint
    from training.plot import plot_run

    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    if not summary.get("complete"):
        raise ConfigError(f"run {summary['run_id']} stopped at step {summary['steps']}: train first")
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    png, page = plot_run(summary, [r for r in history if r["kind"] == "train"], run_dir)

    model_dir = run_dir / "model"
    model_dir.mkdir(exist_ok=True)
    state = checkpoint.load(checkpoint.latest(run_dir))
    torch.save(checkpoint.plain(state["model"]), model_dir / "model.pt")
    shutil.copy2(Path(summary["data_dir"]) / "tokenizer.json", model_dir / "tokenizer.json")
    meta = {"name": cfg.name, "run_id": summary["run_id"], "step": state["step"],
            "started_at": summary["started_at"],
            "published_at": datetime.now(timezone.utc).isoformat(),
            "data_versions": summary["data_versions"], "test_versions": summary["test_versions"],
            "tokenizer_sha256": summary["tokenizer_sha256"], "fingerprint": summary["fingerprint"],
            "final_val_loss": summary["final_val_loss"], "model": cfg.model,
            "vocab_size": _manifest(cfg, summary["data_dir"])["vocab_size"]}
    (model_dir / "model.json").write_text(json.dumps(meta, indent=1))

    published = cfg.output_dir / "model"
    current = published / "model.json"
    newer = current.exists() and json.loads(current.read_text())["started_at"] > summary["started_at"]
    if newer:
        log(f"publish: {published} holds a model of a later run; left as it is")
    else:
        staging = cfg.output_dir / ".model.new"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(model_dir, staging)
        old = cfg.output_dir / ".model.old"
        shutil.rmtree(old, ignore_errors=True)
        if published.exists():
            published.rename(old)
        staging.rename(published)
        shutil.rmtree(old, ignore_errors=True)
    (cfg.output_dir / LATEST).write_text(json.dumps({"run_id": summary["run_id"],
                                                     "run_dir": str(run_dir)}))
    log(f"publish: {page}")
    return {"plot": str(png), "report": str(page), "summary": str(run_dir / "summary.json"),
            "model": str(published if not newer else model_dir), "run_model": str(model_dir),
            "published": not newer, "run_id": summary["run_id"], "run_dir": str(run_dir)}


def run_all(config_path: str | Path, lake: str | Path | None = None, log: Log = print,
            run_id: str | None = None) -> dict[str, Any]:
    cfg = load_config(config_path)
    manifest = prepare_tokens(cfg, lake, log)
    summary = train(cfg, log, data_dir=manifest["dir"], run_id=run_id, lake=lake)
    summary.update(publish(cfg, summary["run_dir"], log))
    write_summary(Path(summary["run_dir"]), summary)
    return summary
