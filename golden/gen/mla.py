#!/usr/bin/env python3
"""Golden files for r1lab mla, from Hugging Face transformers and PyTorch.

Two kinds of case, both computed in float64 on the CPU:

layer_*   transformers' own DeepseekV3Attention (models/deepseek_v3) with a tiny
          config and random weights, eager attention, a causal mask, run over
          T_prefill + T_decode tokens at once. Causality makes the output of
          token t depend on tokens 0..t only, so the C test runs a prefill of
          the first T_prefill tokens and then one-token decode steps, and
          compares each with the matching slice of this one forward.
          Cases cover rope_interleave (DeepSeek's interleaved pairs) and
          rotate-half, q_lora_rank on and off (V3 vs V2-Lite), YaRN on and off
          (with mscale != mscale_all_dim so both YaRN scales matter).
          Weight names are r1lab's (r1_mla_weights); HF -> r1lab:
            q_proj -> wq, q_a_proj -> wq_a, q_a_layernorm -> q_norm,
            q_b_proj -> wq_b, kv_a_proj_with_mqa -> wkv_a,
            kv_a_layernorm -> kv_norm, kv_b_proj -> wkv_b, o_proj -> wo.

decode_*  the decode core at DeepSeek's real dims (576 / 512): a torch
          implementation of MQA over a paged latent cache, block size 64,
          blocks in shuffled order through a block table, sequences of length
          1, 63, 64, 65 and longer in one batch, s_q = 1 and s_q = 2 (causal:
          query i sees seq_len - s_q + 1 + i keys; none -> out 0, lse -inf).
          q and the cache are stored in bf16 (so the same file serves the f32
          and the bf16 backends: bf16 widens to f32 exactly), and out / lse are
          computed from the widened values in float64, stored as f32.

Run with a torch + transformers venv from the repository root:
    python3 golden/gen/mla.py   (writes golden/mla/, updates golden/MANIFEST)
"""

import hashlib
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

from transformers.models.deepseek_v3.configuration_deepseek_v3 import DeepseekV3Config
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
    DeepseekV3Attention,
    DeepseekV3RotaryEmbedding,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manifest  # noqa: E402

SCRIPT = "golden/gen/mla.py"
OUT_DIR = "golden/mla"
MANIFEST = "golden/MANIFEST"
BLOCK = 64


# ---------------------------------------------------------------------------
# layer cases


def layer_case(name, seed, q_lora_rank, interleave, yarn):
    torch.manual_seed(seed)
    d, h, r, dn, dr, dv = 48, 4, 32, 16, 8, 12
    batch, t_prefill, t_decode = 2, 5, 2
    rope = {"rope_type": "default", "rope_theta": 10000.0}
    max_pos = 64
    if yarn:
        rope = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                "original_max_position_embeddings": 16, "beta_fast": 32.0, "beta_slow": 1.0,
                "mscale": 1.0, "mscale_all_dim": 0.8}
    config = DeepseekV3Config(
        hidden_size=d, num_attention_heads=h, num_key_value_heads=h,
        q_lora_rank=q_lora_rank, kv_lora_rank=r, qk_nope_head_dim=dn,
        qk_rope_head_dim=dr, v_head_dim=dv, rope_interleave=interleave,
        rope_parameters=rope, max_position_embeddings=max_pos, attention_bias=False,
        num_hidden_layers=1, vocab_size=32, intermediate_size=32, moe_intermediate_size=16,
        n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1)
    config._attn_implementation = "eager"
    attention = DeepseekV3Attention(config, layer_idx=0)
    rotary = DeepseekV3RotaryEmbedding(config)
    with torch.no_grad():
        for name_, p in attention.named_parameters():
            if "layernorm" in name_:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[1]))
    attention = attention.double()
    rotary = rotary.double()

    total = t_prefill + t_decode
    x = torch.randn(batch, total, d, dtype=torch.float64)
    positions = torch.arange(total).unsqueeze(0).expand(batch, total)
    cos, sin = rotary(x, positions)
    mask = torch.full((total, total), float("-inf"), dtype=torch.float64).triu(1)
    mask = mask.expand(batch, 1, total, total)
    with torch.no_grad():
        out, _ = attention(x, position_embeddings=(cos, sin), attention_mask=mask)

    tensors = {"x": x.float(), "out": out.float()}
    rename = {"q_proj": "wq", "q_a_proj": "wq_a", "q_a_layernorm": "q_norm", "q_b_proj": "wq_b",
              "kv_a_proj_with_mqa": "wkv_a", "kv_a_layernorm": "kv_norm", "kv_b_proj": "wkv_b",
              "o_proj": "wo"}
    for name_, p in attention.named_parameters():
        module = name_.split(".")[0]
        tensors[rename[module]] = p.detach().float().contiguous()
    metadata = {
        "kind": "layer", "d": d, "n_heads": h, "q_lora_rank": q_lora_rank or 0,
        "kv_lora_rank": r, "qk_nope_head_dim": dn, "qk_rope_head_dim": dr, "v_head_dim": dv,
        "rope_theta": 10000.0, "rope_layout": "interleaved" if interleave else "rotate_half",
        "rms_eps": 1e-6, "yarn": int(bool(yarn)),
        "rope_factor": rope.get("factor", 1.0),
        "original_seq_len": rope.get("original_max_position_embeddings", 0),
        "beta_fast": rope.get("beta_fast", 0.0), "beta_slow": rope.get("beta_slow", 0.0),
        "mscale": rope.get("mscale", 0.0), "mscale_all_dim": rope.get("mscale_all_dim", 0.0),
        "batch": batch, "t_prefill": t_prefill, "t_decode": t_decode,
        "softmax_scale": attention.scaling,
        "hf_attention_scaling": rotary.attention_scaling,
    }
    return name, seed, tensors, metadata


# ---------------------------------------------------------------------------
# decode core cases


def to_bf16(t):
    return t.to(torch.bfloat16)


def decode_reference(q, blocks, block_table, seq_lens, scale, causal, dim_v):
    """q (b, s_q, h, D) float64, blocks (N, 64, D) -> out (b, s_q, h, dim_v), lse (b, s_q, h)."""
    b, s_q, h, _ = q.shape
    out = torch.zeros(b, s_q, h, dim_v, dtype=torch.float64)
    lse = torch.full((b, s_q, h), float("-inf"), dtype=torch.float64)
    for i in range(b):
        n = int(seq_lens[i])
        used = (n + BLOCK - 1) // BLOCK
        keys = blocks[block_table[i, :used].long()].reshape(-1, blocks.shape[-1])[:n]  # (n, D)
        for j in range(s_q):
            visible = n - s_q + 1 + j if causal else n
            if visible <= 0:
                continue
            k = keys[:visible]
            scores = scale * (q[i, j] @ k.T)                      # (h, visible)
            lse[i, j] = torch.logsumexp(scores, dim=-1)
            out[i, j] = torch.softmax(scores, dim=-1) @ k[:, :dim_v]
    return out, lse


def decode_case(name, seed, seq_lens, s_q, h, causal=True):
    gen = torch.Generator().manual_seed(seed)
    D, dim_v = 576, 512
    b = len(seq_lens)
    used = [(n + BLOCK - 1) // BLOCK for n in seq_lens]
    max_blocks = max(max(used), 1)
    num_blocks = sum(used)
    order = torch.randperm(num_blocks, generator=gen)          # shuffled physical blocks
    block_table = torch.full((b, max_blocks), -1, dtype=torch.int32)
    k = 0
    for i, u in enumerate(used):
        for j in range(u):
            block_table[i, j] = int(order[k])
            k += 1
    blocks = to_bf16(torch.randn(num_blocks, BLOCK, D, generator=gen, dtype=torch.float64))
    q = to_bf16(torch.randn(b, s_q, h, D, generator=gen, dtype=torch.float64))
    # DeepSeek-V3's scale: 192^-1/2 * mscale(40, 1)^2
    mscale = 0.1 * math.log(40.0) + 1.0
    scale = 192 ** -0.5 * mscale * mscale
    out, lse = decode_reference(q.double(), blocks.double(), block_table,
                                torch.tensor(seq_lens), scale, causal, dim_v)
    tensors = {"q": q, "blocks": blocks, "block_table": block_table,
               "seq_lens": torch.tensor(seq_lens, dtype=torch.int32),
               "out": out.float(), "lse": lse.float()}
    metadata = {"kind": "decode", "batch": b, "s_q": s_q, "n_heads": h, "dim_qk": D,
                "dim_v": dim_v, "num_blocks": num_blocks, "max_blocks_per_seq": max_blocks,
                "softmax_scale": scale, "causal": int(causal)}
    return name, seed, tensors, metadata


CASES = [
    lambda: layer_case("layer_rotate_half_qlora", 701, 24, False, False),
    lambda: layer_case("layer_interleaved_qlora_yarn", 702, 24, True, True),
    lambda: layer_case("layer_interleaved_noqlora", 703, None, True, False),
    lambda: layer_case("layer_rotate_half_noqlora_yarn", 704, None, False, True),
    lambda: decode_case("decode_h16_sq1_mixed", 711, [1, 63, 64, 65, 400], 1, 16),
    lambda: decode_case("decode_h128_sq2_causal", 712, [1, 200], 2, 128),
]


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def update_manifest(lines):
    """Replaces this script's lines in golden/MANIFEST, keeps the others."""
    manifest.replace_folder(OUT_DIR, lines)

def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.chdir(root)
    torch.set_num_threads(2)
    os.makedirs(OUT_DIR, exist_ok=True)
    lines = []
    total = 0
    for make in CASES:
        name, seed, tensors, metadata = make()
        path = f"{OUT_DIR}/{name}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, path,
                  metadata={k: json.dumps(v) if not isinstance(v, str) else v
                            for k, v in metadata.items()})
        size = os.path.getsize(path)
        total += size
        lines.append(f"{path} {SCRIPT} {seed} {sha256_file(path)}")
        print(f"{path}: {size} bytes")
    print(f"total {total} bytes")
    assert total < 4 << 20, "golden/mla must stay under 4 MiB"
    update_manifest(lines)


if __name__ == "__main__":
    sys.exit(main())
