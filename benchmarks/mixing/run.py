"""Data-mixing benchmark: uniform against every strategy, same seeds and budget.

Corpus: five domains of real text found on the machine (training/corpora.py):
Debian changelogs, Debian copyright paragraphs, Python stdlib docstrings,
stdlib source, and ``junk`` (words of the others shuffled, 10% of characters
replaced). Each is written as a Delta table with Spark and tokenised once.

Target: uniform's final validation loss on each clean domain. Headline:
steps until the mean clean-domain validation loss reaches the mean of those
targets, and its ratio to uniform's; also the steps until every clean domain
reaches its own target, the final mean clean-domain validation loss, the
final junk weight, and the strategy's share of step time
(time inside the mixer's hooks, including any inference or gradient signals
the strategy requested, over the whole step).

    .venv/bin/python benchmarks/mixing/run.py            # full run (~10 min on 2 cores)
    .venv/bin/python benchmarks/mixing/run.py --steps 40 --docs 150   # quick look
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from training import corpora  # noqa: E402
from training.config import parse_config  # noqa: E402
from training.tasks import prepare_tokens, train  # noqa: E402

CLEAN = ["changelog", "license", "pydoc", "code"]
JUNK = "junk"

# name -> mixer section. Static uses the natural (token-proportional) mixture.
STRATEGIES = {
    "uniform": {"strategy": "uniform"},
    "static_natural": None,
    "doremi": {"strategy": "doremi"},
    "doremi_refrun": None,  # DoReMi against the uniform run as reference model
    "doremi_decay": {"strategy": "doremi", "params": {"decay": 0.05}},
    "odm": {"strategy": "odm"},
    "ado": {"strategy": "ado"},
    "loss_reweight": {"strategy": "loss_reweight"},
    "loss_select": {"strategy": "loss_select"},
    "grad_select": {"strategy": "grad_select"},
    # LESS/GREATS-style use: the target is the clean domains' validation data.
    "grad_select_target": {"strategy": "grad_select", "params": {"target_domains": CLEAN}},
    "doremi+loss_reweight": {"strategy": [{"strategy": "doremi"},
                                          {"strategy": "loss_reweight", "params": {"direction": "easy"}}]},
}


def base_config(work: Path, args) -> dict:
    return {
        "version": 1,
        "name": "mixbench",
        "data": {"domains": {d: {"table": f"gold/{d}"} for d in CLEAN + [JUNK]},
                 "validation": {"fraction": 0.1}, "tokenizer": {"vocab_size": 2048}},
        "model": {"layers": 2, "hidden": 128, "heads": 4, "seq_len": 64},
        "train": {"steps": args.steps, "batch_size": 16, "lr": 0.003, "warmup": 20,
                  "seed": args.seed, "eval_every": args.eval_every, "eval_samples": 32,
                  "checkpoint_every": args.steps, "threads": args.threads},
        "mixer": {"strategy": "uniform"},
        "output": {"dir": str(work / "runs" / "_data")},
    }


def mean_clean(val_loss: dict[str, float]) -> float:
    return sum(val_loss[d] for d in CLEAN) / len(CLEAN)


def steps_to_target(evals: list[dict], target: dict[str, float]) -> int | None:
    """First eval step where the mean clean-domain val loss reaches the target's."""
    goal = mean_clean(target)
    return next((e["step"] for e in evals if mean_clean(e["val_loss"]) <= goal), None)


def steps_to_every_target(evals: list[dict], target: dict[str, float]) -> int | None:
    """First eval step where every clean domain is at or below its own target."""
    return next((e["step"] for e in evals
                 if all(e["val_loss"][d] <= target[d] for d in CLEAN)), None)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=600, help="documents per domain")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    # One intra-op thread: on a shared 2-core machine, two spinning threads
    # per step slow every run down far more than they speed it up.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="subset of strategies (uniform always runs)")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "mixing" / "work"))
    args = ap.parse_args()
    work = Path(args.work)
    lake = work / "lake"

    t0 = time.perf_counter()
    if not (lake / "gold" / JUNK / "_delta_log").exists():
        from spark_jobs.session import get_spark

        corpora.write_tables(get_spark(), lake, corpora.domains(args.docs, seed=args.seed))
    base = base_config(work, args)
    manifest = prepare_tokens(parse_config(base), lake, log=lambda m: None)
    from spark_jobs.session import stop_spark

    stop_spark()  # tokens are on disk: free the JVM's memory and CPU for training
    prep_s = time.perf_counter() - t0
    tokens = {d: c["train_tokens"] for d, c in manifest["counts"].items()}
    print(f"corpus ready in {prep_s:.0f}s; train tokens per domain: {tokens}", flush=True)

    names = ["uniform"] + [n for n in STRATEGIES if n != "uniform" and (not args.only or n in args.only)]
    results = {}
    for name in names:
        raw = copy.deepcopy(base)
        mixer = STRATEGIES[name]
        if name == "static_natural":
            total = sum(tokens.values())
            mixer = {"strategy": "static", "params": {"weights": {d: n / total for d, n in tokens.items()}}}
        elif name == "doremi_refrun":
            mixer = {"strategy": "doremi",
                     "params": {"reference": str(work / "runs" / "uniform" / "summary.json")}}
        raw["mixer"] = mixer
        run_dir = work / "runs" / name.replace("+", "_")
        raw["output"]["dir"] = str(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(work / "runs" / "_data" / "data", run_dir / "data")
        t = time.perf_counter()
        summary = train(parse_config(raw), log=lambda m: None)
        wall = time.perf_counter() - t
        results[name] = {"summary": summary, "wall_s": wall}
        print(f"{name}: final {summary['final_val_loss']} overhead "
              f"{summary['strategy_overhead_share']:.3%} wall {wall:.0f}s", flush=True)

    target = results["uniform"]["summary"]["final_val_loss"]
    base_steps = steps_to_target(results["uniform"]["summary"]["eval"], target)
    step_tokens = base["train"]["batch_size"] * base["model"]["seq_len"]
    rows = []
    for name, r in results.items():
        s = r["summary"]
        reached = steps_to_target(s["eval"], target)
        final = s["final_val_loss"]
        rows.append({
            "strategy": name,
            "steps_to_target": reached,
            "speedup_vs_uniform": (base_steps / reached) if reached else None,
            "steps_to_every_domain_target": steps_to_every_target(s["eval"], target),
            "final_mean_clean_val_loss": mean_clean(final),
            "final_junk_val_loss": final[JUNK],
            "final_junk_weight": s["eval"][-1]["weights"][JUNK],
            "strategy_overhead_share": s["strategy_overhead_share"],
            "tokens_per_second": s["tokens_per_second"],
            # Step time only (evaluation excluded), so selection's extra
            # inference counts against it.
            "seconds_to_target": reached * step_tokens / s["tokens_per_second"] if reached else None,
            "wall_s": r["wall_s"],
        })
    out = {"config": base, "docs_per_domain": args.docs, "train_tokens": tokens,
           "target_val_loss": {d: target[d] for d in CLEAN}, "rows": rows,
           "seconds": time.perf_counter() - t0}
    (work / "results.json").write_text(json.dumps(out, indent=1))

    print("\n| strategy | steps to target (mean clean) | speed-up vs uniform | steps to every "
          "domain's target | train seconds to target | final mean clean val loss | junk weight (end) "
          "| strategy overhead | tokens/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['steps_to_target'] or 'not reached'} | "
              f"{'%.2fx' % r['speedup_vs_uniform'] if r['speedup_vs_uniform'] else '-'} | "
              f"{r['steps_to_every_domain_target'] or 'not reached'} | "
              f"{'%.1f' % r['seconds_to_target'] if r['seconds_to_target'] else '-'} | "
              f"{r['final_mean_clean_val_loss']:.4f} | {r['final_junk_weight']:.3f} | "
              f"{r['strategy_overhead_share']:.2%} | {r['tokens_per_second']:.0f} |")
    print(f"\ntarget (uniform final): {out['target_val_loss']}; total {out['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
