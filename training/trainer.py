"""The training loop: Megatron GPT, domain sampler and the data mixer.

Each step: the mixer's domain weights drive the sampler; a selection strategy
may keep ``batch_size`` rows of a larger candidate pool; one forward pass
gives per-token losses ``[batch, seq]``, reduced to per-sample losses that
reweighting strategies may weight; after the optimiser step every strategy
sees the step's per-sample losses. Evaluation gives per-domain validation
loss. Checkpoints hold everything needed to continue bit-for-bit.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Callable

import numpy as np
import torch

from training import checkpoint
from training.config import ConfigError, TrainConfig
from training.data import TokenData
from training.mixer import Batch, build_mixer
from training.model import build_gpt, device, per_token_loss
from training.reference import BigramReference
from training.sampler import DomainSampler

# Random projection width for last-layer gradient signals: per-sample
# signals have PROJ_DIM * hidden entries, small enough to compare cheaply.
PROJ_DIM = 16
INFER_CHUNK = 64


class TrainerSignals:
    """The trainer's side of the interaction interface (see training.mixer.base)."""

    def __init__(self, trainer: "Trainer") -> None:
        self._t = trainer
        self.domains = trainer.data.domains
        self.batch_size = trainer.cfg.train["batch_size"]
        self._reference: BigramReference | None = None
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
        model = self._t.model
        vocab = self._t.data.vocab_size
        if self._proj is None:
            gen = torch.Generator().manual_seed(self._t.cfg.train["seed"])
            self._proj = (torch.randn(vocab, PROJ_DIM, generator=gen) / math.sqrt(PROJ_DIM)).to(self._t.dev)
        captured: dict[str, torch.Tensor] = {}
        hook = model.output_layer.register_forward_hook(
            lambda _m, inp, _out: captured.__setitem__("h", inp[0]))
        out = []
        try:
            with torch.no_grad():
                for chunk in batch.tokens.split(INFER_CHUNK):
                    inputs, labels = chunk[:, :-1], chunk[:, 1:]
                    pos = torch.arange(inputs.size(1), device=chunk.device).expand_as(inputs)
                    logits = model(inputs, pos, None).float()              # [b, s, V]
                    err = torch.softmax(logits, -1)
                    err.scatter_add_(-1, labels.unsqueeze(-1), -torch.ones_like(err[..., :1]))
                    hidden = captured["h"].float().transpose(0, 1)         # [b, s, h]
                    g = torch.einsum("bsr,bsh->brh", err @ self._proj, hidden) / inputs.size(1)
                    out.append(g.reshape(len(chunk), -1).cpu())
        finally:
            hook.remove()
        return torch.cat(out).numpy()

    def _ref(self) -> BigramReference:
        if self._reference is None:
            data = self._t.data
            self._reference = BigramReference(data.train, data.val, data.domains, data.vocab_size)
        return self._reference

    def reference_domain_loss(self) -> np.ndarray:
        return self._ref().domain_loss

    def reference_sample_loss(self, batch: Batch) -> np.ndarray:
        return self._ref().sample_loss(batch.tokens.cpu().numpy(), batch.domains)


class Trainer:
    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.log = log
        self.dev = device()
        tr = cfg.train
        if tr.get("threads"):
            torch.set_num_threads(tr["threads"])
        self.data = TokenData.load(cfg)
        torch.manual_seed(tr["seed"])
        self.model = build_gpt(cfg.model, self.data.vocab_size, self.dev)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=tr["lr"],
                                     weight_decay=tr["weight_decay"], betas=(0.9, 0.95))
        self.mixer = build_mixer(cfg.mixer, self.data.domains)
        self.sampler = DomainSampler([len(self.data.train[d]) for d in self.data.domains], tr["seed"])
        self.signals = TrainerSignals(self)
        self.step = 0
        self.history: dict[str, list] = {"train": [], "eval": []}
        self.resumed_from: int | None = None
        self.run_dir = cfg.output_dir
        self.fingerprint = cfg.fingerprint("data", "model", "train", "mixer")

    # -- model calls ---------------------------------------------------------
    def sample_losses(self, tokens: torch.Tensor) -> np.ndarray:
        """Mean next-token loss per window, inference only."""
        self.model.eval()
        with torch.no_grad():
            out = [per_token_loss(self.model, c).mean(1) for c in tokens.split(INFER_CHUNK)]
        self.model.train()
        return torch.cat(out).cpu().numpy()

    def evaluate(self) -> dict[str, float]:
        n = self.cfg.train["eval_samples"]
        return {d: float(self.sample_losses(torch.as_tensor(self.data.val[d][:n], device=self.dev)).mean())
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
        return {"step": self.step, "fingerprint": self.fingerprint,
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "torch_rng": torch.get_rng_state(), "sampler": self.sampler.state_dict(),
                "mixer": self.mixer.state_dict(), "history": self.history}

    def resume(self) -> bool:
        path = checkpoint.latest(self.run_dir)
        if path is None:
            return False
        state = checkpoint.load(path)
        if state["fingerprint"] != self.fingerprint:
            raise ConfigError(f"checkpoint {path} was made with a different config; "
                              f"remove {self.run_dir / 'checkpoints'} or set another output.dir")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.sampler.load_state_dict(state["sampler"])
        self.mixer.load_state_dict(state["mixer"])
        self.history = state["history"]
        self.step = self.resumed_from = state["step"]
        self.log(f"resumed from {path.name} (step {self.step})")
        return True

    # -- the loop ------------------------------------------------------------
    def _weights_dict(self, w: np.ndarray) -> dict[str, float]:
        return {d: round(float(x), 5) for d, x in zip(self.data.domains, w)}

    def train_step(self) -> dict[str, Any]:
        tr = self.cfg.train
        t0 = time.perf_counter()
        strategy_s = 0.0

        t = time.perf_counter()
        weights = np.asarray(self.mixer.domain_weights(self.signals), dtype=float)
        strategy_s += time.perf_counter() - t
        n_cand = int(math.ceil(tr["batch_size"] * self.mixer.candidate_factor))
        doms, idx = self.sampler.draw(n_cand, weights)
        tokens = np.stack([self.data.train[self.data.domains[d]][i] for d, i in zip(doms, idx)])
        batch = Batch(torch.as_tensor(tokens, device=self.dev), doms, idx)
        if n_cand > tr["batch_size"]:
            t = time.perf_counter()
            mask = self.mixer.select(batch, self.signals)
            strategy_s += time.perf_counter() - t
            batch = batch.subset(mask if mask is not None else np.arange(tr["batch_size"]))

        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        per_sample = per_token_loss(self.model, batch.tokens).mean(1)
        losses = per_sample.detach().cpu().numpy()
        t = time.perf_counter()
        sw = self.mixer.sample_weights(batch, losses, self.signals)
        strategy_s += time.perf_counter() - t
        loss = per_sample.mean() if sw is None else (
            per_sample * torch.as_tensor(sw, dtype=per_sample.dtype, device=self.dev)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()

        t = time.perf_counter()
        self.mixer.update(batch, losses, self.signals)
        strategy_s += time.perf_counter() - t
        self.step += 1
        counts = np.bincount(batch.domains, minlength=len(self.data.domains))
        return {"step": self.step, "loss": float(losses.mean()), "lr": self.lr_at(self.step - 1),
                "weights": self._weights_dict(weights),
                "batch_domains": dict(zip(self.data.domains, counts.tolist())),
                "seconds": time.perf_counter() - t0, "strategy_seconds": strategy_s}

    def _write_metrics(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "w") as f:
            for rec in self.history["train"]:
                f.write(json.dumps({"kind": "train", **rec}) + "\n")
            for rec in self.history["eval"]:
                f.write(json.dumps({"kind": "eval", **rec}) + "\n")

    def run(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``train.steps`` (resuming if a checkpoint exists).

        ``stop_after`` ends the call after that many steps of this call, as a
        scheduler pre-empting the job would; the next call resumes.
        """
        tr = self.cfg.train
        started = time.perf_counter()
        self.resume()
        done_here = 0
        while self.step < tr["steps"]:
            rec = self.train_step()
            self.history["train"].append(rec)
            self.log(f"step {rec['step']}/{tr['steps']} loss {rec['loss']:.4f} lr {rec['lr']:.2e} "
                     f"weights {' '.join(f'{d}={w:.3f}' for d, w in rec['weights'].items())} "
                     f"({rec['seconds'] * 1000:.0f} ms, strategy {rec['strategy_seconds'] * 1000:.1f} ms)")
            if self.step % tr["eval_every"] == 0 or self.step == tr["steps"]:
                val = self.evaluate()
                self.mixer.on_eval(val, self.signals)
                w = self.mixer.domain_weights(self.signals)
                entry = {"step": self.step, "val_loss": {d: round(v, 5) for d, v in val.items()},
                         "weights": self._weights_dict(np.asarray(w, dtype=float))}
                self.history["eval"].append(entry)
                self.log(f"eval step {self.step}: "
                         + " ".join(f"{d}={v:.4f}" for d, v in entry["val_loss"].items()))
            if self.step % tr["checkpoint_every"] == 0 or self.step == tr["steps"]:
                checkpoint.save(self.run_dir, self.step, self.state_dict())
                self._write_metrics()
            done_here += 1
            if stop_after is not None and done_here >= stop_after:
                break
        self._write_metrics()
        return self.summary(time.perf_counter() - started)

    def summary(self, seconds: float) -> dict[str, Any]:
        train = self.history["train"]
        step_s = sum(r["seconds"] for r in train)
        strat_s = sum(r["strategy_seconds"] for r in train)
        final = self.history["eval"][-1]["val_loss"] if self.history["eval"] else {}
        tokens = len(train) * self.cfg.train["batch_size"] * self.cfg.model["seq_len"]
        return {
            "name": self.cfg.name,
            "strategy": self.mixer.names,
            "steps": self.step,
            "complete": self.step >= self.cfg.train["steps"],
            "resumed_from": self.resumed_from,
            "device": self.dev.type,
            "eval": self.history["eval"],
            "final_val_loss": final,
            "mean_val_loss": float(np.mean(list(final.values()))) if final else None,
            "tokens_per_second": tokens / step_s if step_s else None,
            "strategy_overhead_share": strat_s / step_s if step_s else None,
            "run_dir": str(self.run_dir),
            "seconds": round(seconds, 3),
        }
