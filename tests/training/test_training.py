"""The trainer with its mixer on real tokens: every strategy, the junk-domain
behaviour, checkpoint resume, the CLI and the report."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from include.config import PROJECT_ROOT
from training.mixer import strategy_names
from training.tasks import publish, train
from training.trainer import Trainer
from training_testkit import DOMAINS

STRATEGY_PARAMS = {"static": {"weights": {"changelog": 1, "license": 1, "pydoc": 2, "junk": 0}},
                   # small enough to run their machinery inside four steps
                   "doremi": {"ref_steps": 10},
                   "aioli": {"warmup": 0, "update_steps": 6, "lp_steps": 1}}


@pytest.mark.parametrize("name", strategy_names())
def test_every_strategy_trains_with_the_real_trainer(make_config, name):
    cfg = make_config(name, train={"steps": 4, "eval_every": 2},
                      mixer={"strategy": name, "params": STRATEGY_PARAMS.get(name, {})})
    summary = train(cfg, log=lambda m: None)
    assert summary["steps"] == 4 and summary["complete"]
    assert [e["step"] for e in summary["eval"]] == [2, 4]
    for e in summary["eval"]:
        assert set(e["val_loss"]) == set(DOMAINS)
        assert all(math.isfinite(v) for v in e["val_loss"].values())
        assert sum(e["weights"].values()) == pytest.approx(1, abs=1e-4)
    assert 0 <= summary["strategy_overhead_share"] < 1
    if name == "static":
        assert summary["eval"][-1]["weights"]["junk"] == 0


def test_composed_strategies_train_together(make_config):
    cfg = make_config("stack", train={"steps": 4, "eval_every": 4},
                      mixer={"strategy": [{"strategy": "doremi"},
                                          {"strategy": "loss_reweight", "params": {"direction": "easy"}},
                                          {"strategy": "grad_select", "params": {"candidate_factor": 1.5}}]})
    summary = train(cfg, log=lambda m: None)
    assert summary["strategy"] == ["doremi", "loss_reweight", "grad_select"]
    assert summary["eval"][-1]["weights"] != {d: 0.25 for d in DOMAINS}


def test_doremi_pushes_junk_down_without_starving_clean_domains(make_config):
    cfg = make_config("junk", train={"steps": 30, "eval_every": 10},
                      mixer={"strategy": "doremi", "params": {"ref_steps": 150}})
    summary = train(cfg, log=lambda m: None)
    weights = summary["eval"][-1]["weights"]
    clean = [w for d, w in weights.items() if d != "junk"]
    # Junk below its uniform share and below every clean domain; no clean
    # domain starved (the default floor is a fifth of the uniform share).
    assert weights["junk"] < 0.2 and weights["junk"] < min(clean), weights
    assert min(clean) >= 0.05 - 1e-6, weights
    assert summary["reference_seconds"] > 0


def _losses(run_dir):
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return ([(r["step"], r["loss"], r["weights"]) for r in recs if r["kind"] == "train"],
            [r for r in recs if r["kind"] == "eval"])


def test_interrupted_run_resumes_with_identical_losses(make_config):
    mixer = {"strategy": [{"strategy": "doremi", "params": {"ref_steps": 10}},
                          {"strategy": "loss_select"}]}
    sections = {"train": {"steps": 8, "eval_every": 2, "checkpoint_every": 3}, "mixer": mixer}
    straight = make_config("straight", **sections)
    done = train(straight, log=lambda m: None)

    cut = make_config("cut", **sections)
    first = Trainer(cut, log=lambda m: None).run(stop_after=5)   # pre-empted after step 5
    assert first["steps"] == 5 and not first["complete"]
    # The checkpoint of step 3 is the newest; step 4 and 5 are redone.
    lines = []
    resumed = Trainer(cut, log=lines.append).run()
    assert resumed["resumed_from"] == 3 and resumed["run_dir"] == first["run_dir"]
    assert any(line.startswith("resumed from step_") for line in lines)
    assert _losses(Path(done["run_dir"])) == _losses(Path(resumed["run_dir"]))


def test_checkpoints_load_without_the_full_unpickler(make_config):
    import torch

    from training import checkpoint

    cfg = make_config("ckpt", train={"steps": 2, "eval_every": 2},
                      mixer={"strategy": "aioli", "params": {"warmup": 0, "update_steps": 6,
                                                             "lp_steps": 1}})
    summary = train(cfg, log=lambda m: None)
    path = checkpoint.latest(Path(summary["run_dir"]))
    state = torch.load(path, map_location="cpu", weights_only=True)   # no code runs from the file
    assert state["step"] == 2 and state["fingerprint"] == summary["fingerprint"]
    # A file that needs the full unpickler is refused, not executed.
    evil = path.with_name("step_9999999.pt")
    torch.save({"step": 9, "x": _Evil()}, evil)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        checkpoint.load(evil)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_killed_process_resumes_with_identical_losses(make_config, tmp_path, gold_lake):
    """SIGKILL a real training process mid-run; the retry matches a clean run."""
    sections = {"train": {"steps": 60, "eval_every": 10, "checkpoint_every": 10},
                "mixer": {"strategy": "odm"}}
    straight = make_config("straight", **sections)
    clean = train(straight, log=lambda m: None)

    killed = make_config("killed", **sections)
    cfg_path = tmp_path / "killed.yaml"
    cfg_path.write_text(yaml.safe_dump(killed.raw))
    cmd = [sys.executable, "-m", "training.cli", "train", str(cfg_path), "--lake", str(gold_lake)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log)
    from training.tasks import run_dir_for

    _, run_dir = run_dir_for(killed)
    assert run_dir.name == Path(clean["run_dir"]).name    # same config and data: same run
    ckpts = run_dir / "checkpoints"
    deadline = time.time() + 240
    while not list(ckpts.glob("step_*.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    saved = sorted(ckpts.glob("step_*.pt"))
    assert saved and saved[-1].name != "step_0000060.pt"

    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["resumed_from"] is not None and summary["steps"] == 60
    assert summary["run_dir"] == str(run_dir)
    assert _losses(Path(clean["run_dir"])) == _losses(run_dir)


def test_cli_prints_steps_and_a_json_summary_then_publishes(make_config, tmp_path, gold_lake):
    cfg = make_config("cli", train={"steps": 4, "eval_every": 2},
                      mixer={"strategy": "doremi", "params": {"ref_steps": 10}})
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(cfg.raw))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-m", "training.cli", "train", str(path), "--lake", str(gold_lake)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert sum(line.startswith("step ") for line in lines) == 4
    summary = json.loads(lines[-1])
    assert [e["step"] for e in summary["eval"]] == [2, 4]
    assert set(summary["eval"][0]["val_loss"]) == set(DOMAINS) == set(summary["eval"][0]["weights"])
    assert summary["seconds"] > 0
    page = Path(summary["report"]).read_text()
    assert "data:image/png;base64," in page and "doremi" in page
    assert Path(summary["plot"]).read_bytes()[:4] == b"\x89PNG"
    # The published model: weights, tokenizer, and what it was trained on.
    meta = json.loads((cfg.output_dir / "model" / "model.json").read_text())
    assert meta["run_id"] == summary["run_id"] and meta["data_versions"] == {d: 0 for d in DOMAINS}

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**cfg.raw, "mixer": {"strategy": "doremy"}}))
    done = subprocess.run([sys.executable, "-m", "training.cli", "train", str(bad), "--lake", str(gold_lake)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "unknown strategy 'doremy'" in done.stderr


def test_publish_plots_loss_and_weights(make_config):
    cfg = make_config("plot", train={"steps": 4, "eval_every": 2}, mixer={"strategy": "odm"})
    done = train(cfg, log=lambda m: None)
    paths = publish(cfg, done["run_dir"], log=lambda m: None)
    assert os.path.getsize(paths["plot"]) > 10_000
    summary = json.loads((Path(done["run_dir"]) / "summary.json").read_text())
    assert summary["eval"][-1]["step"] == 4 and np.isfinite(summary["mean_val_loss"])
