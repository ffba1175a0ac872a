"""The mixing scenario suite's smoke version (benchmarks/mixing/run.py --smoke):
all five scenarios built, split three ways, trained with three strategies, and
every reported figure present and sane. Figures themselves come from the full run."""
from __future__ import annotations

import json
import math

from training_testkit import ROOT


def test_smoke_suite_runs_every_scenario(spark, tmp_path):
    import sys

    sys.path.insert(0, str(ROOT))
    from benchmarks.mixing import run

    assert run.main(["--smoke", "--work", str(tmp_path)], keep_spark=True) == 0
    out = json.loads((tmp_path / "results.json").read_text())
    assert set(out["scenarios"]) == {"unlearnable", "redundant", "slow", "imbalanced", "clean_target"}
    for name, sc in out["scenarios"].items():
        assert set(sc["rows"]) == {"uniform", "aioli", "loss_select"}
        assert "noise" not in sc["learnable"] and set(sc["goal"]) <= set(sc["train_tokens"])
        u = sc["rows"]["uniform"]
        assert u["steps_to_uniform"] <= 12 and u["speedup"] == 1.0 and u["goal_minus_uniform"] == 0
        assert "never_worse" in sc["rows"]["aioli"]
        for strat, r in sc["rows"].items():
            assert set(r["final"]) == set(sc["train_tokens"])
            assert all(math.isfinite(v) for v in r["final"].values())
            assert 0 <= r["min_learnable_weight"] <= 1 and 0 <= r["strategy_overhead"] < 1
            assert r["signals_overhead"] is not None
    # The redundant domain is evaluated on its separate table of other code.
    assert out["scenarios"]["redundant"]["train_tokens"]["code_dup"] > 0
    assert "### clean_target" in run.report(out)
