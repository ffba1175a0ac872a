"""The training config (``datamill train CONFIG``): load, default, validate.

The shape is the one in ``docs/interfaces.md``; the JSON schema below is the
single source of defaults and of the error messages a bad config gets.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from include.config import PROJECT_ROOT

DEFAULT_STRATEGY = "loss_select"  # mixer.strategy when a config names none


class ConfigError(ValueError):
    """A training config that cannot run; the message says what is wrong."""


_STRATEGY_ENTRY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["strategy"],
    "properties": {
        "strategy": {"type": "string"},
        "params": {"type": "object", "default": {}},
    },
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "name", "data"],
    "properties": {
        "version": {"const": 1},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_]+$"},
        "description": {"type": "string"},
        "data": {
            "type": "object",
            "additionalProperties": False,
            "required": ["domains"],
            "properties": {
                "domains": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["table"],
                        "properties": {"table": {"type": "string", "minLength": 1}},
                    },
                },
                # The selection holdout: strategies and reference models may
                # use it (RHO-LOSS's irreducible-loss model, a validation
                # gradient, DoReMi's reference); never used to report.
                "validation": {
                    "type": "object",
                    "additionalProperties": False,
                    "default": {},
                    "properties": {
                        "fraction": {"type": "number", "exclusiveMinimum": 0,
                                     "exclusiveMaximum": 0.5, "default": 0.05},
                    },
                },
                # The evaluation set no strategy ever sees: what ``eval`` in the
                # summary reports. A domain listed under ``domains`` is
                # evaluated on that table (rows whose id or text also occur in
                # its training table are dropped from training, and counted);
                # every other domain holds out ``fraction`` of its documents.
                "test": {
                    "type": "object",
                    "additionalProperties": False,
                    "default": {},
                    "properties": {
                        "fraction": {"type": "number", "exclusiveMinimum": 0,
                                     "exclusiveMaximum": 0.5, "default": 0.05},
                        "domains": {
                            "type": "object",
                            "default": {},
                            "additionalProperties": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["table"],
                                "properties": {"table": {"type": "string", "minLength": 1}},
                            },
                        },
                    },
                },
                "tokenizer": {
                    "type": "object",
                    "additionalProperties": False,
                    "default": {},
                    "properties": {
                        "vocab_size": {"type": "integer", "minimum": 300, "default": 2048},
                        # Characters per domain fed to BPE training: enough for
                        # a stable vocabulary, bounded so prep stays quick.
                        "train_chars": {"type": "integer", "minimum": 1000, "default": 2_000_000},
                    },
                },
            },
        },
        "model": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "layers": {"type": "integer", "minimum": 1, "default": 2},
                "hidden": {"type": "integer", "minimum": 8, "default": 128},
                "heads": {"type": "integer", "minimum": 1, "default": 4},
                "seq_len": {"type": "integer", "minimum": 8, "default": 128},
            },
        },
        "train": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "steps": {"type": "integer", "minimum": 1, "default": 600},
                "batch_size": {"type": "integer", "minimum": 1, "default": 16},
                "lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.003},
                "warmup": {"type": "integer", "minimum": 0, "default": 20},
                "weight_decay": {"type": "number", "minimum": 0, "default": 0.01},
                "seed": {"type": "integer", "default": 0},
                "eval_every": {"type": "integer", "minimum": 1, "default": 25},
                "eval_samples": {"type": "integer", "minimum": 1, "default": 64},
                "checkpoint_every": {"type": "integer", "minimum": 1},
                "threads": {"type": "integer", "minimum": 1},
                # Data-parallel processes (torchrun): batch_size is the global
                # batch and must divide evenly. gloo on CPU, NCCL on GPUs.
                "ranks": {"type": "integer", "minimum": 1, "maximum": 64, "default": 1},
            },
        },
        "mixer": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                # One name, or a list of {strategy, params} applied together.
                "strategy": {"oneOf": [{"type": "string"},
                                       {"type": "array", "minItems": 1, "items": _STRATEGY_ENTRY}],
                             # loss_select: the scenario suite's choice (README, "Which
                             # strategy"): better than uniform in 15 of 15 paired runs.
                             "default": DEFAULT_STRATEGY},
                "params": {"type": "object", "default": {}},
            },
        },
        "output": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "dir": {"type": "string"},
                # Per-sample training signals to the lakehouse table
                # _system/training_signals (training/signals.py).
                "signals": {"type": "boolean", "default": True},
            },
        },
    },
}


def _fill_defaults(schema: dict, value: Any) -> Any:
    if schema.get("type") != "object" or not isinstance(value, dict):
        return value
    for key, sub in schema.get("properties", {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            value[key] = _fill_defaults(sub, value[key])
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in value:
            if key not in schema.get("properties", {}):
                value[key] = _fill_defaults(extra, value[key])
    return value


@dataclass(frozen=True)
class TrainConfig:
    """A validated training config with every default filled in."""

    raw: dict[str, Any]
    path: Path | None

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def domains(self) -> dict[str, str]:
        """Domain -> table, in name order: the order of weights, samplers and
        checkpoints must not depend on how the YAML happened to list them."""
        return {d: spec["table"] for d, spec in sorted(self.raw["data"]["domains"].items())}

    @property
    def data(self) -> dict[str, Any]:
        return self.raw["data"]

    @property
    def model(self) -> dict[str, Any]:
        return self.raw["model"]

    @property
    def train(self) -> dict[str, Any]:
        return self.raw["train"]

    @property
    def mixer(self) -> dict[str, Any]:
        return self.raw["mixer"]

    @property
    def test_tables(self) -> dict[str, str]:
        """Domain -> separate evaluation table, for the domains that have one."""
        return {d: spec["table"] for d, spec in sorted(self.raw["data"]["test"]["domains"].items())}

    @property
    def output_dir(self) -> Path:
        out = Path(self.raw["output"].get("dir") or f"runs/{self.name}").expanduser()
        return out if out.is_absolute() else PROJECT_ROOT / out

    def fingerprint(self, *sections: str) -> str:
        """Hash of the named sections: what a cached artefact depends on."""
        blob = json.dumps({s: self.raw.get(s) for s in sections}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_config(raw: Any, path: Path | None = None) -> TrainConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping at the top level")
    raw = _fill_defaults(SCHEMA, copy.deepcopy(raw))
    try:
        jsonschema.validate(raw, SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ConfigError(f"{path or 'config'}: {where}: {exc.message}") from None
    model = raw["model"]
    if model["hidden"] % model["heads"]:
        raise ConfigError(f"{path or 'config'}: model/hidden ({model['hidden']}) must be "
                          f"divisible by model/heads ({model['heads']})")
    tr = raw["train"]
    if tr["batch_size"] % tr["ranks"]:
        raise ConfigError(f"{path or 'config'}: train/batch_size ({tr['batch_size']}) must be "
                          f"divisible by train/ranks ({tr['ranks']}): it is the global batch")
    unknown = set(raw["data"]["test"]["domains"]) - set(raw["data"]["domains"])
    if unknown:
        raise ConfigError(f"{path or 'config'}: data/test/domains names {sorted(unknown)}, "
                          f"which are not training domains ({sorted(raw['data']['domains'])})")
    tr.setdefault("checkpoint_every", tr["eval_every"])
    return TrainConfig(raw=raw, path=path)


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, path)
