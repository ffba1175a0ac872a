"""One rank of a data-parallel training run (started by torchrun from training.tasks).

    python -m torch.distributed.run --standalone --nproc-per-node N \\
        -m training.worker --config RUN/config.json --data-dir DIR --run-id ID --lake LAKE

Every rank builds the same trainer; rank 0 logs each step to stdout and
writes ``<run>/summary.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.worker")
    ap.add_argument("--config", required=True, help="resolved training config (JSON)")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--stop-after", type=int)
    args = ap.parse_args(argv)

    from training.config import parse_config
    from training.tasks import write_summary
    from training.trainer import Trainer

    cfg = parse_config(json.loads(Path(args.config).read_text()), Path(args.config))
    trainer = Trainer(cfg, log=lambda line: print(line, flush=True), data_dir=args.data_dir,
                      run_id=args.run_id, lake=args.lake)
    summary = trainer.run(stop_after=args.stop_after)
    if trainer.dist.main:
        write_summary(Path(summary["run_dir"]), summary)
    trainer.dist.barrier()
    import torch.distributed as dist

    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
