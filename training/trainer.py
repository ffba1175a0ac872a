"""The training loop: Megatron GPT, domain sampler, the data mixer, N ranks.

Each step: the mixer's domain weights drive the sampler; a selection strategy
may keep ``batch_size`` rows of a larger candidate pool; one forward pass
gives per-token losses ``[batch, seq]``, reduced to per-sample losses that
reweighting strategies may weight; after the optimiser step every strategy
sees the step's per-sample losses, and the training signals (per document:
loss, weight, selected) go to the lakehouse. Evaluation gives per-domain
loss on the evaluation split, which no strategy ever sees (strategies get
the separate selection holdout through :class:`TrainerSignals`).

Data parallel (``train.ranks`` processes under torchrun, see
``training.distributed``): ``batch_size`` is the global batch. Rank 0 makes
every decision — domain weights, the batch plan, the selection mask, sample
weights — and broadcasts it, so all ranks train on one plan; each rank runs
its slice of the batch, per-sample losses are all-gathered so every rank's
strategy state sees the whole batch, and gradients are averaged across
ranks. Signals that need the model (inference, gradients, reference
losses) are computed shard by shard and gathered, so strategy hooks run on
every rank with identical inputs. Checkpoints hold everything needed to
continue bit-for-bit; rank 0 writes them, every rank loads them.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from training import checkpoint, distributed
from training.config import ConfigError, TrainConfig
from training.data import TokenData
from training.mixer import Batch, build_mixer
from training.model import build_gpt, per_token_loss
from training.reference import BigramReference, ProxyReference
from training.sampler import DomainSampler
from training.signals import SignalWriter

# Random projection width for last-layer gradient signals: per-sample
# signals have PROJ_DIM * hidden entries, small enough to compare cheaply.
PROJ_DIM = 16
INFER_CHUNK = 64


def run_slug(run_id: str) -> str:
    """A folder name for a run id (Airflow run ids hold ':' and '+')."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._")[:80]
    return f"{slug}-{hashlib.sha1(run_id.encode()).hexdigest()[:8]}"


def fingerprint(cfg: TrainConfig, manifest: dict) -> str:
    """What a checkpoint depends on: the config and the exact data.

    The data enter through each domain table's Delta version (and the
    evaluation tables'), the token folder's key and the tokenizer file's
    hash, so new data or a retrained tokenizer of the same vocabulary size
    never continues old weights.
    """
    blob = json.dumps({"config": {s: cfg.raw.get(s) for s in ("data", "model", "train", "mixer")},
                       "versions": manifest.get("versions"),
                       "test_versions": manifest.get("test_versions"),
                       "data_key": manifest.get("key_hash"),
                       "tokenizer": manifest.get("tokenizer_sha256")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class TrainerSignals:
    """The trainer's side of the interaction interface (see training.mixer.base).

    Every method that runs the model shards its rows over the ranks and
    gathers the result; strategies call them from hooks that run on every
    rank (never from ``domain_weights``, which only rank 0 calls).
    """

    def __init__(self, trainer: "Trainer") -> None:
        self._t = trainer
        self.domains = trainer.data.domains
        self.batch_size = trainer.cfg.train["batch_size"]
        self._bigram: BigramReference | None = None
        self._proxy: ProxyReference | None = None
        self._proj: torch.Tensor | None = None

    @property
    def step(self) -> int:
        return self._t.step

    def infer(self, batch: Batch) -> np.ndarray:
        return self._t.sample_losses(batch.tokens)

    def val_batch(self, domains=None, per_domain=8) -> Batch:
        data = self._t.data
        names = domains or data.domains
        rows, doms, idx = [], [], []
        for name in names:
            d = data.domains.index(name)
            n = min(per_domain, len(data.val[name]))
            rows.append(data.val[name][:n])
            doms += [d] * n
            idx += list(range(n))
        tokens = torch.as_tensor(np.concatenate(rows), device=self._t.dev)
        return Batch(tokens, np.asarray(doms), np.asarray(idx))

    def gradients(self, batch: Batch) -> np.ndarray:
        """Projected gradient of each sample's loss w.r.t. the output layer.

        For logits ``z = W h`` the gradient is ``sum_t (softmax(z_t) - y_t)
        h_t^T``; projecting the vocabulary axis with a fixed random matrix
        (Johnson-Lindenstrauss, as LESS and GREATS do) keeps inner products
        while shrinking ``[V, h]`` to ``[PROJ_DIM, h]``.
        """
        t = self._t
        model = t.model
        vocab = t.data.vocab_size
        if self._proj is None:
            gen = torch.Generator().manual_seed(t.cfg.train["seed"])
            self._proj = (torch.randn(vocab, PROJ_DIM, generator=gen) / math.sqrt(PROJ_DIM)).to(t.dev)
        captured: dict[str, torch.Tensor] = {}
        hook = model.output_layer.register_forward_hook(
            lambda _m, inp, _out: captured.__setitem__("h", inp[0]))
        out = []
        mine = batch.tokens[t.dist.shard(len(batch))]
        try:
            with torch.no_grad():
                for chunk in mine.split(INFER_CHUNK):
                    inputs, labels = chunk[:, :-1], chunk[:, 1:]
                    pos = torch.arange(inputs.size(1), device=chunk.device).expand_as(inputs)
                    logits = model(inputs, pos, None).float()              # [b, s, V]
                    err = torch.softmax(logits, -1)
                    err.scatter_add_(-1, labels.unsqueeze(-1), -torch.ones_like(err[..., :1]))
                    hidden = captured["h"].float().transpose(0, 1)         # [b, s, h]
                    g = torch.einsum("bsr,bsh->brh", err @ self._proj, hidden) / inputs.size(1)
                    out.append(g.reshape(len(chunk), -1))
        finally:
            hook.remove()
        local = torch.cat(out) if out else torch.zeros((0, PROJ_DIM * model.config.hidden_size),
                                                       device=t.dev)
        return t.dist.gather_rows(local, len(batch)).cpu().numpy()

    def _bigrams(self) -> BigramReference:
        if self._bigram is None:
            data = self._t.data
            self._bigram = BigramReference(data.train, data.val, data.domains, data.vocab_size)
        return self._bigram

    def reference_domain_loss(self) -> np.ndarray:
        return self._bigrams().domain_loss

    def reference_sample_loss(self, batch: Batch) -> np.ndarray:
        return self._bigrams().sample_loss(batch.tokens.cpu().numpy(), batch.domains)

    def reference_model_loss(self, batch: Batch, params: dict) -> np.ndarray:
        """Per-sample loss of DoReMi's reference model (trained on the uniform mixture)."""
        t = self._t
        if self._proxy is None:
            params = {**params, "steps": params.get("steps") or t.cfg.train["steps"]}
            self._proxy = ProxyReference.build(t.data, t.cfg.model, t.cfg.train, params, t.dev,
                                               t.data_dir, t.dist, log=t.log)
            t.reference_seconds += self._proxy.build_seconds
        local = torch.as_tensor(self._proxy.sample_loss(batch.tokens[t.dist.shard(len(batch))]),
                                device=t.dev)
        return t.dist.gather_rows(local, len(batch)).cpu().numpy()


class Trainer:
    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = print, *,
                 data_dir: str | Path | None = None, run_id: str | None = None,
                 lake: str | Path | None = None) -> None:
        self.cfg = cfg
        tr = cfg.train
        if tr.get("threads"):
            torch.set_num_threads(tr["threads"])
        elif distributed.world_size() > 1:
            torch.set_num_threads(1)  # N ranks on one machine: one thread each unless told
        self.dev = distributed.device()
        self.dist = distributed.init(self.dev)
        if self.dist.world != tr["ranks"] and self.dist.world > 1:
            raise ConfigError(f"config asks for train/ranks {tr['ranks']}, "
                              f"but {self.dist.world} processes were started")
        self.log = log if self.dist.main else (lambda _line: None)
        self.data = TokenData.load(cfg, data_dir)
        self.data_dir = Path(self.data.manifest["dir"])
        torch.manual_seed(tr["seed"])
        self.model = build_gpt(cfg.model, self.data.vocab_size, self.dev)
        self.ddp = distributed.wrap(self.model, self.dist)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=tr["lr"],
                                     weight_decay=tr["weight_decay"], betas=(0.9, 0.95))
        self.mixer = build_mixer(cfg.mixer, self.data.domains)
        self.sampler = DomainSampler([len(self.data.train[d]) for d in self.data.domains], tr["seed"])
        self.signals = TrainerSignals(self)
        self.step = 0
        self.history: dict[str, list] = {"train": [], "eval": []}
        self.resumed_from: int | None = None
        self.fingerprint = fingerprint(cfg, self.data.manifest)
        self.run_id = run_id or f"data-{self.fingerprint}"
        self.run_dir = cfg.output_dir / "runs" / run_slug(self.run_id)
        self.reference_seconds = 0.0
        self.started_at = datetime.now(timezone.utc).isoformat()
        from include.config import lake_root

        # Signals go back to the lakehouse the data came from.
        lake = lake_root(lake or self.data.manifest.get("lake"))
        self.writer = SignalWriter(lake, self.run_id, cfg.name,
                                   dict(cfg.domains), self.data.manifest.get("versions", {}),
                                   enabled=cfg.raw["output"]["signals"] and self.dist.main)

    # -- model calls ---------------------------------------------------------
    def sample_losses(self, tokens: torch.Tensor) -> np.ndarray:
        """Mean next-token loss per window, inference only, sharded over the ranks."""
        self.model.eval()
        mine = tokens[self.dist.shard(len(tokens))]
        with torch.no_grad():
            out = [per_token_loss(self.model, c).mean(1) for c in mine.split(INFER_CHUNK)]
        self.model.train()
        local = torch.cat(out) if out else torch.zeros(0, device=self.dev)
        return self.dist.gather_rows(local, len(tokens)).cpu().numpy()

    def evaluate(self) -> dict[str, float]:
        """Per-domain loss on the evaluation split (never shown to a strategy)."""
        n = self.cfg.train["eval_samples"]
        return {d: float(self.sample_losses(torch.as_tensor(self.data.test[d][:n], device=self.dev)).mean())
                for d in self.data.domains}

    def lr_at(self, step: int) -> float:
        tr = self.cfg.train
        if step < tr["warmup"]:
            return tr["lr"] * (step + 1) / tr["warmup"]
        span = max(1, tr["steps"] - tr["warmup"])
        progress = min(1.0, (step - tr["warmup"]) / span)
        return tr["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    # -- state ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "fingerprint": self.fingerprint, "run_id": self.run_id,
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "torch_rng": torch.get_rng_state(), "sampler": self.sampler.state_dict(),
                "mixer": self.mixer.state_dict(), "history": self.history,
                "signals": self.writer.state_dict(), "started_at": self.started_at,
                "reference_seconds": self.reference_seconds}

    def resume(self) -> bool:
        path = checkpoint.latest(self.run_dir)
        if path is None:
            return False
        state = checkpoint.load(path)
        if state["fingerprint"] != self.fingerprint:
            raise ConfigError(f"checkpoint {path} was made with a different config or data; "
                              f"remove {self.run_dir} or start another run")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.sampler.load_state_dict(state["sampler"])
        self.mixer.load_state_dict(state["mixer"])
        self.history = state["history"]
        self.writer.load_state_dict(state["signals"])
        self.started_at = state["started_at"]
        self.reference_seconds = state["reference_seconds"]
        self.step = self.resumed_from = state["step"]
        self.log(f"resumed from {path.name} (step {self.step})")
        return True

    # -- the loop ------------------------------------------------------------
    def _weights_dict(self, w: np.ndarray) -> dict[str, float]:
        return {d: round(float(x), 5) for d, x in zip(self.data.domains, w)}

    def _tokens(self, doms: np.ndarray, idx: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.stack([self.data.train[self.data.domains[d]][i]
                                         for d, i in zip(doms, idx)]), device=self.dev)

    def train_step(self) -> dict[str, Any]:
        tr = self.cfg.train
        t0 = time.perf_counter()
        strategy_s = 0.0
        n_cand = int(math.ceil(tr["batch_size"] * self.mixer.candidate_factor))

        t = time.perf_counter()
        plan = None
        if self.dist.main:
            weights = np.asarray(self.mixer.domain_weights(self.signals), dtype=float)
            plan = (weights, *self.sampler.draw(n_cand, weights))
        weights, doms, idx = self.dist.broadcast(plan)
        strategy_s += time.perf_counter() - t
        cand = Batch(self._tokens(doms, idx), doms, idx)
        batch = cand
        chosen = np.arange(n_cand)
        if n_cand > tr["batch_size"]:
            t = time.perf_counter()
            mask = self.mixer.select(cand, self.signals)
            mask = self.dist.broadcast(mask)
            strategy_s += time.perf_counter() - t
            chosen = (np.flatnonzero(mask) if mask is not None and mask.dtype == bool
                      else np.asarray(mask) if mask is not None else np.arange(tr["batch_size"]))
            batch = cand.subset(chosen)

        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        mine = self.dist.shard(len(batch))
        token_loss = per_token_loss(self.ddp, batch.tokens[mine])             # [b_local, seq]
        per_sample = token_loss.mean(1)
        all_tokens = self.dist.gather_rows(token_loss.detach(), len(batch))    # [B, seq]
        losses = all_tokens.mean(1).cpu().numpy()
        t = time.perf_counter()
        sw = self.mixer.sample_weights(batch, losses, self.signals)
        sw = self.dist.broadcast(sw)
        strategy_s += time.perf_counter() - t
        # Each rank's mean over its slice; DDP averages the gradients over the
        # ranks, which is the gradient of the mean over the global batch.
        loss = per_sample.mean() if sw is None else (
            per_sample * torch.as_tensor(sw[mine], dtype=per_sample.dtype, device=self.dev)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()

        t = time.perf_counter()
        self.mixer.update(batch, losses, self.signals)
        strategy_s += time.perf_counter() - t
        self.step += 1
        signal_s = self.writer.seconds
        self._record_signals(cand, chosen, all_tokens.cpu().numpy(), sw, weights)
        signal_s = self.writer.seconds - signal_s
        counts = np.bincount(batch.domains, minlength=len(self.data.domains))
        return {"step": self.step, "loss": float(losses.mean()), "lr": self.lr_at(self.step - 1),
                "weights": self._weights_dict(weights),
                "batch_domains": dict(zip(self.data.domains, counts.tolist())),
                "seconds": time.perf_counter() - t0, "strategy_seconds": strategy_s,
                "signal_seconds": signal_s}

    def _record_signals(self, cand: Batch, chosen: np.ndarray, token_loss: np.ndarray,
                        sw: np.ndarray | None, weights: np.ndarray) -> None:
        """One row per document segment of each chosen window; passed-over candidates too."""
        if not self.writer.enabled:
            return
        t = time.perf_counter()
        width = self.cfg.model["seq_len"] + 1
        ids, doms, losses, toks, wts, dws, sel = [], [], [], [], [], [], []
        row_of = {int(c): b for b, c in enumerate(chosen)}   # candidate row -> batch row
        for d in np.unique(cand.domains):
            name = self.data.domains[d]
            index = self.data.docs[name]
            rows = np.flatnonzero(cand.domains == d)
            owners = index.of_labels(cand.index[rows], width)                 # [r, seq]
            for r, own in zip(rows, owners):
                b = row_of.get(int(r))
                if b is None:
                    for doc in np.unique(own):
                        ids.append(index.ids[doc]); doms.append(name); losses.append(None)
                        toks.append(int((own == doc).sum())); wts.append(0.0)
                        dws.append(float(weights[d])); sel.append(False)
                    continue
                uniq, inv = np.unique(own, return_inverse=True)
                sums = np.bincount(inv, weights=token_loss[b])
                cnt = np.bincount(inv)
                w = 1.0 if sw is None else float(sw[b])
                for doc, s, c in zip(uniq, sums, cnt):
                    ids.append(index.ids[doc]); doms.append(name); losses.append(float(s / c))
                    toks.append(int(c)); wts.append(w); dws.append(float(weights[d])); sel.append(True)
        self.writer.seconds += time.perf_counter() - t
        self.writer.add(self.step, ids, doms, losses, toks, wts, dws, sel)

    def _write_metrics(self) -> None:
        if not self.dist.main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "w") as f:
            for rec in self.history["train"]:
                f.write(json.dumps({"kind": "train", **rec}) + "\n")
            for rec in self.history["eval"]:
                f.write(json.dumps({"kind": "eval", **rec}) + "\n")

    def _checkpoint(self) -> None:
        if self.dist.main:
            checkpoint.save(self.run_dir, self.step, self.state_dict())
        self._write_metrics()
        self.dist.barrier()

    def run(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``train.steps`` (resuming if this run has a checkpoint).

        ``stop_after`` ends the call after that many steps of this call, as a
        scheduler pre-empting the job would; the next call resumes.
        """
        tr = self.cfg.train
        started = time.perf_counter()
        self.resume()
        self.writer.start_at(self.step)
        done_here = 0
        while self.step < tr["steps"]:
            rec = self.train_step()
            self.history["train"].append(rec)
            self.log(f"step {rec['step']}/{tr['steps']} loss {rec['loss']:.4f} lr {rec['lr']:.2e} "
                     f"weights {' '.join(f'{d}={w:.3f}' for d, w in rec['weights'].items())} "
                     f"({rec['seconds'] * 1000:.0f} ms, strategy {rec['strategy_seconds'] * 1000:.1f} ms)")
            if self.step % tr["eval_every"] == 0 or self.step == tr["steps"]:
                val = self.evaluate()
                w = self.mixer.domain_weights(self.signals) if self.dist.main else None
                w = self.dist.broadcast(w)
                entry = {"step": self.step, "val_loss": {d: round(v, 5) for d, v in val.items()},
                         "weights": self._weights_dict(np.asarray(w, dtype=float))}
                self.history["eval"].append(entry)
                self.log(f"eval step {self.step}: "
                         + " ".join(f"{d}={v:.4f}" for d, v in entry["val_loss"].items()))
            if self.step == tr["steps"] or (stop_after is not None and done_here + 1 >= stop_after):
                # The last rows of the run (or of this call) are written before
                # its checkpoint; the flush counts against the step it ends.
                before = self.writer.seconds
                self.writer.close()
                rec["signal_seconds"] += self.writer.seconds - before
                rec["seconds"] += self.writer.seconds - before
            if self.step % tr["checkpoint_every"] == 0 or self.step == tr["steps"]:
                self._checkpoint()
            done_here += 1
            if stop_after is not None and done_here >= stop_after:
                break
        self._write_metrics()
        return self.summary(time.perf_counter() - started)

    def summary(self, seconds: float) -> dict[str, Any]:
        train = self.history["train"]
        step_s = sum(r["seconds"] for r in train)
        strat_s = sum(r["strategy_seconds"] for r in train)
        sig_s = sum(r.get("signal_seconds", 0.0) for r in train)
        final = self.history["eval"][-1]["val_loss"] if self.history["eval"] else {}
        tokens = len(train) * self.cfg.train["batch_size"] * self.cfg.model["seq_len"]
        m = self.data.manifest
        return {
            "name": self.cfg.name,
            "run_id": self.run_id,
            "strategy": self.mixer.names,
            "steps": self.step,
            "complete": self.step >= self.cfg.train["steps"],
            "resumed_from": self.resumed_from,
            "device": self.dev.type,
            "ranks": self.dist.world,
            "eval_split": "test",
            "eval": self.history["eval"],
            "final_val_loss": final,
            "mean_val_loss": float(np.mean(list(final.values()))) if final else None,
            "tokens_per_second": tokens / step_s if step_s else None,
            "strategy_overhead_share": strat_s / step_s if step_s else None,
            "reference_seconds": round(self.reference_seconds, 3),
            "signals_overhead_share": sig_s / step_s if step_s else None,
            "signals_written": self.writer.written,
            "fingerprint": self.fingerprint,
            "data_versions": m.get("versions"),
            "test_versions": m.get("test_versions"),
            "tokenizer_sha256": m.get("tokenizer_sha256"),
            "data_dir": str(self.data_dir),
            "run_dir": str(self.run_dir),
            "started_at": self.started_at,
            "seconds": round(seconds, 3),
        }
