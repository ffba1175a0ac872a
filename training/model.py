"""The Megatron-Core GPT model, its layer spec chosen once by the device.

CPU: Megatron's local spec with ``core_attention`` swapped for
:class:`SDPAttention` (the stock ``DotProductAttention`` calls ``torch.cuda``);
CUDA: the Transformer Engine spec when TE is installed, else the local spec
with the stock attention. The choice is made in :func:`layer_spec` only; the
rest of the trainer never branches on the device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.transformer.module import MegatronModule

from training.distributed import device  # noqa: F401 - the device is chosen in one place


class SDPAttention(MegatronModule):
    """Causal core attention on ``torch.nn.functional.scaled_dot_product_attention``.

    Same call signature as Megatron's ``DotProductAttention``. Written here
    because Megatron-Core has no device-neutral core attention: its own one
    allocates through ``torch.cuda`` and TE's needs a GPU.
    """

    def __init__(self, config, layer_number, attn_mask_type, attention_type,
                 attention_dropout=None, softmax_scale=None, cp_comm_type=None,
                 pg_collection=None):
        super().__init__(config=config)
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        self.softmax_scale = softmax_scale

    def forward(self, query, key, value, attention_mask, attn_mask_type=None,
                attention_bias=None, packed_seq_params=None):
        if packed_seq_params is not None or attention_bias is not None:
            raise NotImplementedError("SDPAttention supports plain causal attention only")
        # Megatron passes [seq, batch, heads, head_dim]; SDPA wants [batch, heads, seq, dim].
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        if k.size(1) != q.size(1):  # grouped-query attention
            rep = q.size(1) // k.size(1)
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=self.softmax_scale,
            dropout_p=self.dropout if self.training else 0.0)
        return out.permute(2, 0, 1, 3).reshape(out.size(2), out.size(0), -1)


def layer_spec(dev: torch.device):
    from megatron.core.models.gpt import gpt_layer_specs as specs

    if dev.type == "cuda":
        try:
            import transformer_engine  # noqa: F401

            return specs.get_gpt_layer_with_transformer_engine_spec()
        except ImportError:
            return specs.get_gpt_layer_local_spec()
    spec = specs.get_gpt_layer_local_spec()
    spec.submodules.self_attention.submodules.core_attention = SDPAttention
    return spec


def build_gpt(model_cfg: dict, vocab_size: int, dev: torch.device):
    """A GPTModel for ``model_cfg`` (layers, hidden, heads, seq_len) on ``dev``."""
    from megatron.core.models.gpt.gpt_model import GPTModel
    from megatron.core.transformer.transformer_config import TransformerConfig

    from training.distributed import init

    init(dev)
    config = TransformerConfig(
        num_layers=model_cfg["layers"],
        hidden_size=model_cfg["hidden"],
        num_attention_heads=model_cfg["heads"],
        use_cpu_initialization=dev.type == "cpu",
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bf16=dev.type == "cuda",
        params_dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32,
        pipeline_dtype=torch.float32,
    )
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(dev),
        vocab_size=vocab_size,
        max_sequence_length=model_cfg["seq_len"],
        share_embeddings_and_output_weights=True,
    )
    return model.to(dev)


def per_token_loss(model, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token losses ``[batch, seq]`` for windows ``tokens`` ``[batch, seq+1]``."""
    inputs, labels = tokens[:, :-1], tokens[:, 1:]
    pos = torch.arange(inputs.size(1), device=tokens.device).unsqueeze(0).expand_as(inputs)
    return model(inputs, pos, None, labels=labels).float()
