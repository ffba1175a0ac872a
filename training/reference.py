"""Per-domain bigram reference models for strategies that need a reference loss.

DoReMi compares against a reference model's loss and RHO-LOSS against an
"irreducible loss" model trained on held-out data. A smoothed bigram per
domain plays both parts at the cost of a count table: it needs no extra
training run, and it reaches low loss on text with local structure but not
on shuffled or corrupted text, which is the contrast those methods rely on.
Counting is a few ``numpy`` calls; no library ships this for token windows.
"""
from __future__ import annotations

import numpy as np

# Dirichlet prior strength towards the unigram: large enough that a bigram
# seen once does not dominate, small next to real counts.
PRIOR = 20.0


class Bigram:
    """A Dirichlet-smoothed bigram model over token ids.

    Keeps the raw counts and scores only the pairs asked for: a full
    log-probability table would cost ``vocab**2`` logs per model for a few
    thousand lookups.
    """

    def __init__(self, windows: np.ndarray, vocab: int) -> None:
        self.vocab = vocab
        uni = np.bincount(windows.reshape(-1), minlength=vocab).astype(np.float64) + 0.5
        self.uni = uni / uni.sum()
        pairs = windows[:, :-1].reshape(-1) * vocab + windows[:, 1:].reshape(-1)
        self.pairs = np.bincount(pairs, minlength=vocab * vocab)
        self.rows = np.bincount(windows[:, :-1].reshape(-1), minlength=vocab)

    def sample_loss(self, windows: np.ndarray) -> np.ndarray:
        """Mean next-token loss per window ``[n]``."""
        prev, nxt = windows[:, :-1], windows[:, 1:]
        p = (self.pairs[prev * self.vocab + nxt] + PRIOR * self.uni[nxt]) / (self.rows[prev] + PRIOR)
        return -np.log(p).mean(1)


class BigramReference:
    """Reference losses per domain, built on first use by the trainer.

    ``domain_loss``: a bigram fitted on a domain's training windows, scored on
    its validation windows (DoReMi's reference loss). ``sample_loss``: a
    bigram fitted on the validation windows only, scored on any windows of
    that domain (RHO-LOSS's irreducible loss: never trained on the points it
    scores).
    """

    def __init__(self, train: dict[str, np.ndarray], val: dict[str, np.ndarray],
                 domains: list[str], vocab: int) -> None:
        self.train, self.val, self.domains, self.vocab = train, val, domains, vocab
        self._domain_loss: np.ndarray | None = None
        self._holdout: list[Bigram] | None = None

    @property
    def domain_loss(self) -> np.ndarray:
        if self._domain_loss is None:
            self._domain_loss = np.array([
                Bigram(self.train[d], self.vocab).sample_loss(self.val[d]).mean() for d in self.domains])
        return self._domain_loss

    def sample_loss(self, windows: np.ndarray, domains: np.ndarray) -> np.ndarray:
        if self._holdout is None:
            self._holdout = [Bigram(self.val[d], self.vocab) for d in self.domains]
        out = np.empty(len(windows))
        for d in np.unique(domains):
            rows = domains == d
            out[rows] = self._holdout[d].sample_loss(windows[rows])
        return out


class ProxyReference:
    """DoReMi's reference model: a small GPT trained on the uniform mixture.

    Xie et al., 2023 (arXiv:2305.10429, section 2) train a reference model
    on the uniform ("baseline") mixture and score every training batch
    with it; the proxy's per-domain *excess* loss over that reference
    drives the weights. Here the reference is the same Megatron GPT,
    smaller (``layers``/``hidden`` of the strategy's params), trained for
    ``steps`` steps of the run's batch size on the training split under
    uniform weights with its own seed, before the first update that needs
    it. Its state is cached under the token folder (keyed by its settings),
    so other strategies or reruns on the same data reuse it; the time it
    took is reported as ``build_seconds``.
    """

    def __init__(self, model, build_seconds: float, cached: bool):
        self.model = model
        self.build_seconds = build_seconds
        self.cached = cached

    @classmethod
    def build(cls, data, model_cfg: dict, train_cfg: dict, params: dict, dev, cache_dir,
              dist, log=print) -> "ProxyReference":
        import hashlib
        import json
        import math
        import time
        from pathlib import Path

        import torch

        from training import checkpoint
        from training.model import build_gpt, per_token_loss
        from training.sampler import DomainSampler

        ref_cfg = {"layers": params["layers"], "hidden": params["hidden"],
                   "heads": max(1, params["hidden"] // max(1, model_cfg["hidden"] // model_cfg["heads"])),
                   "seq_len": model_cfg["seq_len"]}
        key = {"model": ref_cfg, "steps": params["steps"], "batch": train_cfg["batch_size"],
               "lr": train_cfg["lr"], "seed": train_cfg["seed"], "data": data.manifest.get("key_hash")}
        path = Path(cache_dir) / "reference" / (
            hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] + ".pt")
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(train_cfg["seed"] + 7919)
            model = build_gpt(ref_cfg, data.vocab_size, dev)
            cached = path.exists()
            if not cached and dist.main:
                opt = torch.optim.AdamW(model.parameters(), lr=train_cfg["lr"], betas=(0.9, 0.95))
                sampler = DomainSampler([len(data.train[d]) for d in data.domains],
                                        train_cfg["seed"] + 7919)
                uniform = np.full(len(data.domains), 1 / len(data.domains))
                steps = params["steps"]
                for step in range(steps):
                    for g in opt.param_groups:
                        g["lr"] = train_cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
                    doms, idx = sampler.draw(train_cfg["batch_size"], uniform)
                    tokens = torch.as_tensor(np.stack([data.train[data.domains[d]][i]
                                                       for d, i in zip(doms, idx)]), device=dev)
                    loss = per_token_loss(model, tokens).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                torch.save(checkpoint.plain(model.state_dict()), tmp)
                tmp.replace(path)
                log(f"reference model: {ref_cfg['layers']} layer(s), hidden {ref_cfg['hidden']}, "
                    f"{steps} uniform steps, final batch loss {loss.item():.3f}; saved {path}")
            dist.barrier()
            model.load_state_dict(checkpoint.load(path))
        model.eval()
        return cls(model, time.perf_counter() - started, cached)

    def sample_loss(self, tokens) -> np.ndarray:
        import torch

        from training.model import per_token_loss

        with torch.no_grad():
            return torch.cat([per_token_loss(self.model, c).mean(1) for c in tokens.split(64)]).cpu().numpy()
