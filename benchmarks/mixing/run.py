"""The mixing scenario suite: uniform against every strategy on five mixtures.

Each scenario (benchmarks/mixing/scenarios.py) is written as Delta tables
with Spark, tokenised once (three-way split: train / selection holdout /
evaluation), then trained once per strategy: same Megatron-Core GPT, same
seed, same data-order generator, same steps, CPU (gloo, one intra-op
thread), training signals written to the scenario's lakehouse as in any run.
Reported losses are on the evaluation split, which no strategy sees.

Per scenario x strategy:

- steps to uniform's final loss: the first evaluation at which the mean
  evaluation loss over the scenario's goal domains is at or below uniform's
  final one, and uniform's steps over it (the speed-up);
- final evaluation loss per domain, and the goal mean minus uniform's;
- the minimum mixture weight any learnable domain got at any step (what the
  sampler used, Aioli's exploration steps included), and for selection
  strategies the smallest share of the trained samples a learnable domain
  had over the last 50 steps;
- overhead: time inside the strategy's hooks (with the signals it asked
  for) and time writing training signals, each as a share of step time.
  DoReMi's reference model is built by its first run in each scenario and
  its build time is reported with it.

    .venv/bin/python benchmarks/mixing/run.py                  # the suite, 3 seeds (one seed: 25 min on 2 cores, loaded)
    .venv/bin/python benchmarks/mixing/run.py --smoke          # plumbing check (the test suite runs it)
    .venv/bin/python benchmarks/mixing/run.py --scenarios slow --strategies uniform aioli
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.mixing.scenarios import build  # noqa: E402
from training import corpora  # noqa: E402
from training.config import parse_config  # noqa: E402
from training.tasks import prepare_tokens, train  # noqa: E402

# name -> mixer section (None: built per scenario). Every strategy with its defaults.
STRATEGIES = {
    "uniform": {"strategy": "uniform"},
    "natural": None,                        # static, token-proportional
    "doremi": {"strategy": "doremi"},
    "odm": {"strategy": "odm"},
    "ado": {"strategy": "ado"},
    "aioli": {"strategy": "aioli"},
    "loss_reweight": {"strategy": "loss_reweight"},
    "loss_select": {"strategy": "loss_select"},
    "grad_select": {"strategy": "grad_select"},
}
SELECTION = {"loss_select", "grad_select"}


def base_config(args, domains: list[str], test_domains: list[str], out: Path) -> dict:
    model = ({"layers": 1, "hidden": 32, "heads": 2, "seq_len": 32} if args.smoke else
             {"layers": 2, "hidden": 128, "heads": 4, "seq_len": 64})
    return {
        "version": 1, "name": "mixbench",
        "data": {"domains": {d: {"table": f"gold/{d}"} for d in domains},
                 "validation": {"fraction": 0.05},
                 "test": {"fraction": 0.1, "domains": {d: {"table": f"eval/{d}"} for d in test_domains}},
                 "tokenizer": {"vocab_size": 512 if args.smoke else 2048}},
        "model": model,
        "train": {"steps": args.steps, "batch_size": 16, "lr": 0.003, "warmup": 20 if not args.smoke else 2,
                  "seed": args.seed, "eval_every": args.eval_every, "eval_samples": 24,
                  "checkpoint_every": args.steps, "threads": args.threads},
        "mixer": {"strategy": "uniform"},
        "output": {"dir": str(out), "signals": True},
    }


def goal_loss(val: dict[str, float], goal: list[str]) -> float:
    return sum(val[d] for d in goal) / len(goal)


def curve(summary: dict, goal: list[str]) -> list[tuple[int, float]]:
    return [(e["step"], goal_loss(e["val_loss"], goal)) for e in summary["eval"]]


def seed_metrics(summary: dict, history: list[dict], learnable: list[str]) -> dict:
    """What one seed's run contributes: weights, trained shares, overheads, step time."""
    train = [r for r in history if r["kind"] == "train"]
    tail = train[-50:]
    totals = {d: sum(r["batch_domains"][d] for r in tail) for d in summary["final_val_loss"]}
    n = sum(totals.values())
    return {
        "min_learnable_weight": min(min(r["weights"][d] for d in learnable) for r in train),
        "min_learnable_trained_share": min(totals[d] / n for d in learnable),
        "strategy_overhead": summary["strategy_overhead_share"],
        "signals_overhead": summary["signals_overhead_share"],
        "reference_seconds": summary["reference_seconds"],
        "step_seconds": sum(r["seconds"] for r in train) / len(train),
        "final_weights": summary["eval"][-1]["weights"],
    }


def aggregate(runs: list[tuple[dict, list[dict]]], goal: list[str], learnable: list[str],
              uniform: dict | None) -> dict:
    """One strategy over its seeds; ``uniform`` is uniform's aggregate (None for uniform)."""
    import numpy as np

    curves = np.array([[v for _, v in curve(s, goal)] for s, _ in runs])   # [seeds, evals]
    steps = [st for st, _ in curve(runs[0][0], goal)]
    mean_curve = curves.mean(0)
    finals = curves[:, -1]
    per = [seed_metrics(s, h, learnable) for s, h in runs]
    target = finals.mean() if uniform is None else uniform["final_goal"]
    reached = next((st for st, v in zip(steps, mean_curve) if v <= target + 1e-12), None)
    base = reached if uniform is None else uniform["steps_to_uniform"]
    step_s = float(np.mean([p["step_seconds"] for p in per]))
    out = {
        "seeds": len(runs),
        "steps_to_uniform": reached,
        "speedup": (base / reached) if reached and base else None,
        "final_goal": float(finals.mean()), "final_goal_sd": float(finals.std(ddof=1)) if len(finals) > 1 else 0.0,
        "final": {d: float(np.mean([s["final_val_loss"][d] for s, _ in runs])) for d in runs[0][0]["final_val_loss"]},
        "min_learnable_weight": min(p["min_learnable_weight"] for p in per),
        "min_learnable_trained_share": min(p["min_learnable_trained_share"] for p in per),
        "strategy_overhead": float(np.mean([p["strategy_overhead"] for p in per])),
        "signals_overhead": float(np.mean([p["signals_overhead"] for p in per])),
        "signals_overhead_max": float(max(p["signals_overhead"] for p in per)),
        "reference_seconds": float(np.mean([p["reference_seconds"] for p in per])),
        "step_seconds": step_s,
        "seconds_to_uniform": reached * step_s if reached else None,
        "final_weights": per[0]["final_weights"],
        "_finals": finals.tolist(),
    }
    if uniform is not None:
        diffs = finals - np.array(uniform["_finals"])            # paired by seed
        out["goal_minus_uniform"] = float(diffs.mean())
        out["goal_minus_uniform_sd"] = float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0
        out["never_worse"] = bool(diffs.mean() <= 0)
    else:
        out["goal_minus_uniform"] = out["goal_minus_uniform_sd"] = 0.0
    return out


def main(argv: list[str] | None = None, keep_spark: bool = False) -> int:
    """Run the suite; ``keep_spark`` leaves the process's Spark session running
    (a caller that shares it, such as the test suite's smoke run)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=400, help="documents per ordinary domain")
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--eval-every", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per strategy (model init and data order)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scenarios", nargs="*")
    ap.add_argument("--strategies", nargs="*", help="subset (uniform always runs)")
    ap.add_argument("--smoke", action="store_true", help="tiny model and data: checks the plumbing")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "mixing" / "work"))
    args = ap.parse_args(argv)
    if args.smoke:
        args.docs, args.steps, args.eval_every, args.seeds = 40, 12, 6, 1
        args.strategies = args.strategies or ["uniform", "aioli", "loss_select"]
    work = Path(args.work)
    t0 = time.perf_counter()
    load0 = os.getloadavg()

    scenarios = [s for s in build(args.docs, args.seed) if not args.scenarios or s.name in args.scenarios]
    names = ["uniform"] + [n for n in STRATEGIES if n != "uniform"
                           and (not args.strategies or n in args.strategies)]
    prepared = {}
    from spark_jobs.session import get_spark, stop_spark

    for sc in scenarios:
        lake = work / "lake" / sc.name
        shutil.rmtree(lake, ignore_errors=True)
        spark = get_spark()
        corpora.write_tables(spark, lake, sc.tables)
        corpora.write_tables(spark, lake, sc.test_tables, prefix="eval")
        base = base_config(args, list(sc.tables), list(sc.test_tables), work / "runs" / sc.name / "_data")
        shutil.rmtree(work / "runs" / sc.name, ignore_errors=True)
        manifest = prepare_tokens(parse_config(base), lake, log=lambda m: None)
        prepared[sc.name] = (lake, base, manifest)
    if not keep_spark:
        stop_spark()  # tokens are on disk: free the JVM's memory and CPU for training
    prep_s = time.perf_counter() - t0
    print(f"{len(scenarios)} scenarios prepared in {prep_s:.0f}s", flush=True)

    results: dict[str, dict] = {}
    for sc in scenarios:
        lake, base, manifest = prepared[sc.name]
        tokens = {d: c["train_tokens"] for d, c in manifest["counts"].items()}
        rows: dict[str, dict] = {}
        for name in names:
            runs = []
            for seed in range(args.seed, args.seed + args.seeds):
                raw = copy.deepcopy(base)
                mixer = STRATEGIES[name]
                if name == "natural":
                    total = sum(tokens.values())
                    mixer = {"strategy": "static",
                             "params": {"weights": {d: n / total for d, n in tokens.items()}}}
                raw["mixer"] = mixer
                raw["train"]["seed"] = seed
                raw["output"]["dir"] = str(work / "runs" / sc.name / f"{name}_s{seed}")
                t = time.perf_counter()
                summary = train(parse_config(raw), log=lambda m: None, data_dir=manifest["dir"],
                                run_id=f"bench-{sc.name}-{name}-s{seed}", lake=lake)
                history = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").open()]
                runs.append((summary, history))
                print(f"{sc.name}/{name}/seed {seed}: goal loss "
                      f"{goal_loss(summary['final_val_loss'], sc.goal):.4f} wall "
                      f"{time.perf_counter() - t:.0f}s load {os.getloadavg()[0]:.1f}", flush=True)
            rows[name] = aggregate(runs, sc.goal, sc.learnable, rows.get("uniform"))
        results[sc.name] = {"what": sc.what, "goal": sc.goal, "learnable": sc.learnable,
                            "train_tokens": tokens, "uniform_final_goal": rows["uniform"]["final_goal"],
                            "uniform_steps": rows["uniform"]["steps_to_uniform"], "rows": rows}

    out = {"args": vars(args), "model": prepared[scenarios[0].name][1]["model"],
           "scenarios": results, "seconds": time.perf_counter() - t0, "prep_seconds": prep_s,
           "loadavg_start": load0, "loadavg_end": os.getloadavg()}
    work.mkdir(parents=True, exist_ok=True)
    (work / "results.json").write_text(json.dumps(out, indent=1))
    print(report(out))
    return 0


def _f(x, fmt):
    return "-" if x is None else fmt % x


def report(out: dict) -> str:
    lines = []
    for name, sc in out["scenarios"].items():
        domains = list(sc["train_tokens"])
        lines += [f"\n### {name}: {sc['what']}", "",
                  f"goal: mean evaluation loss over {', '.join(sc['goal'])}; uniform's final "
                  f"{sc['uniform_final_goal']:.4f} (mean over seeds; its mean curve first reaches "
                  f"it at step {sc['uniform_steps']}); train tokens {sc['train_tokens']}", "",
                  "| strategy | steps to uniform's final | speed-up | train s to uniform's final | "
                  "final goal loss ± sd | vs uniform (paired) ± sd | "
                  + " | ".join(f"final {d}" for d in domains)
                  + " | min learnable weight | min learnable trained share | strategy overhead | "
                  "signals overhead |",
                  "|---" * (10 + len(domains)) + "|"]
        for s, r in sc["rows"].items():
            lines.append(
                f"| {s} | {r['steps_to_uniform'] or 'never'} | {_f(r['speedup'], '%.2fx')} | "
                f"{_f(r['seconds_to_uniform'], '%.1f')} | {r['final_goal']:.3f} ± {r['final_goal_sd']:.3f} | "
                f"{r['goal_minus_uniform']:+.3f} ± {r['goal_minus_uniform_sd']:.3f} | "
                + " | ".join(f"{r['final'][d]:.3f}" for d in domains)
                + f" | {r['min_learnable_weight']:.3f} | {r['min_learnable_trained_share']:.3f} | "
                f"{r['strategy_overhead']:.1%} | {r['signals_overhead']:.2%} |")
    lines.append("\n| strategy | " + " | ".join(out["scenarios"]) + " | never worse on all |")
    lines.append("|---" * (len(out["scenarios"]) + 2) + "|")
    strategies = list(next(iter(out["scenarios"].values()))["rows"])
    for s in strategies:
        cells = []
        ok = True
        for sc in out["scenarios"].values():
            r = sc["rows"][s]
            ok &= r["goal_minus_uniform"] <= 0
            cells.append(f"{r['goal_minus_uniform']:+.3f}, {_f(r['speedup'], '%.2fx')}")
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {'yes' if ok else 'no'} |")
    lines.append(f"\ntotal {out['seconds']:.0f}s (prep {out['prep_seconds']:.0f}s); load average "
                 f"{out['loadavg_start'][0]:.1f} at start, {out['loadavg_end'][0]:.1f} at end")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
