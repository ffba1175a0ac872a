"""``datamill train CONFIG [--lake DIR]``: the training loop outside Airflow.

Prints one line per step and per evaluation, and as its last line one JSON
object (the run summary: ``eval`` entries with per-domain ``val_loss`` on
the evaluation split and ``weights``, ``seconds``, ``run_dir``, ...). With
``train.ranks`` > 1 the training runs on that many torchrun processes. Exit codes: 0 success, 1 invalid input, 2 usage.
``register(subparsers)`` adds the command to the ``datamill`` CLI;
``python -m training.cli train CONFIG`` runs it alone.
"""
from __future__ import annotations

import argparse
import json
import sys


def _train(args: argparse.Namespace) -> int:
    from training.config import ConfigError
    from training.data import DataError
    from training.mixer import StrategyError
    from training.tasks import TrainingError, run_all

    try:
        summary = run_all(args.config, args.lake, log=lambda line: print(line, flush=True),
                          run_id=args.run_id)
    except (ConfigError, DataError, StrategyError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary), flush=True)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model on gold tables with a data mixer",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="training config YAML")
    p.add_argument("--lake", help="lakehouse root (default: $DATAMILL_LAKE or ./lakehouse)")
    p.add_argument("--run-id", help="name the run (default: data-<fingerprint of config and data>, "
                   "so the same command on the same data resumes it)")
    p.set_defaults(func=_train)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
