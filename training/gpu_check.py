"""The CUDA path in one short timed run: tokens/s and MFU of the Megatron GPT.

``scripts/gpu_check.sh`` runs this. It builds the trainer's model with the
layer spec ``training.model.layer_spec`` picks on CUDA (Transformer Engine's
when TE is installed, else Megatron-Core's stock local spec with its own
``DotProductAttention``), in bf16, trains ``--steps`` timed steps on random
tokens after ``--warmup`` untimed ones, and prints one JSON line: device,
spec, tokens/s, achieved TFLOP/s and MFU against the GPU's dense bf16 peak
(from the table below, or ``GPU_PEAK_TFLOPS``).

FLOPs per token are the usual training estimate, ``6 N + 12 L h s``
(weights forward and backward, plus attention scores and values), N the
non-embedding parameter count plus the output layer.

Without CUDA it prints why and exits 0 having measured nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

# Dense bf16 tensor-core peaks (TFLOP/s), vendor data sheets (without sparsity).
PEAK_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 NVL": 835.0,
               "H100 PCIe": 756.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def peak_for(name: str) -> float | None:
    env = os.environ.get("GPU_PEAK_TFLOPS")
    if env:
        return float(env)
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if key.lower() in name.lower():
            return PEAK_TFLOPS[key]
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"gpu_check": "skipped", "reason": "no CUDA device visible to torch",
                          "torch": torch.__version__, "cuda_build": torch.version.cuda}))
        print("gpu_check: no CUDA device; nothing was measured", file=sys.stderr)
        return 0
    try:
        import megatron.core  # noqa: F401
    except ImportError:
        print("gpu_check: megatron-core is not installed here; install the project's pin "
              "(megatron-core==0.16.1, a pure wheel) into this Python first", file=sys.stderr)
        return 1

    from training.model import build_gpt, device, layer_spec, per_token_loss

    dev = device()
    name = torch.cuda.get_device_name(dev)
    spec = layer_spec(dev)
    attention = spec.submodules.self_attention.submodules.core_attention
    torch.manual_seed(0)
    cfg = {"layers": args.layers, "hidden": args.hidden, "heads": args.heads, "seq_len": args.seq_len}
    model = build_gpt(cfg, args.vocab, dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.embedding.word_embeddings.weight.numel() + model.embedding.position_embeddings.weight.numel()
    # Tied output layer: its matmul still costs vocab * hidden per token.
    n_flop_params = n_params - n_embed + args.vocab * args.hidden
    flops_per_token = 6 * n_flop_params + 12 * args.layers * args.hidden * args.seq_len
    gen = torch.Generator(device=dev).manual_seed(0)

    def step():
        tokens = torch.randint(0, args.vocab, (args.batch, args.seq_len + 1), device=dev, generator=gen)
        loss = per_token_loss(model, tokens).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize(dev)
    t = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t
    tokens_s = args.batch * args.seq_len * args.steps / seconds
    achieved = tokens_s * flops_per_token / 1e12
    peak = peak_for(name)
    print(json.dumps({
        "gpu_check": "ok", "device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
        "layer_spec": f"{attention.__module__}.{attention.__name__}", "dtype": "bf16",
        "model": cfg, "vocab": args.vocab, "batch": args.batch, "params": n_params,
        "steps_timed": args.steps, "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens_s, 1), "achieved_tflops": round(achieved, 2),
        "peak_tflops": peak, "mfu": round(achieved / peak, 4) if peak else None,
        "final_loss": round(float(loss), 4),
        "max_memory_gib": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
