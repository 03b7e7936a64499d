"""Writes a randomly initialised Llama-architecture scorer as a Hugging Face directory
(config.json, model.safetensors in bf16, a character-level tokenizer.json) and a JSONL of
documents, for scripts/gpu-check to time `kiln-worker score` on CUDA without a download.
Uses only torch and the standard library (the GPU machine has no network).

usage: python3 gpu_scorer.py OUT_DIR DOCS_JSONL [--layers N --hidden N --docs N]
The default shape is TinyLlama-1.1B's (Zhang et al. 2024: 22 layers, hidden 2048, 32 heads,
4 KV heads, FFN 5632); its 32,000-row vocabulary keeps the output layer's cost real.
"""
import argparse, glob, json, os, random, struct, sys

import torch

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("docs")
ap.add_argument("--layers", type=int, default=22)
ap.add_argument("--hidden", type=int, default=2048)
ap.add_argument("--heads", type=int, default=32)
ap.add_argument("--kv-heads", type=int, default=4)
ap.add_argument("--ffn", type=int, default=5632)
ap.add_argument("--vocab", type=int, default=32000)
ap.add_argument("--seq-len", type=int, default=2048)
ap.add_argument("--docs-count", type=int, default=512)
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
head_dim = a.hidden // a.heads

config = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "hidden_size": a.hidden, "intermediate_size": a.ffn, "num_hidden_layers": a.layers,
    "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": head_dim,
    "vocab_size": a.vocab, "max_position_embeddings": a.seq_len, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "tie_word_embeddings": False, "attention_bias": False,
    "mlp_bias": False, "torch_dtype": "bfloat16",
}
json.dump(config, open(os.path.join(a.out, "config.json"), "w"), indent=2)

g = torch.Generator().manual_seed(0)
def normal(*shape):
    return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)

tensors = {"model.embed_tokens.weight": normal(a.vocab, a.hidden),
           "model.norm.weight": torch.ones(a.hidden, dtype=torch.bfloat16),
           "lm_head.weight": normal(a.vocab, a.hidden)}
kv = a.kv_heads * head_dim
for i in range(a.layers):
    p = f"model.layers.{i}."
    tensors[p + "self_attn.q_proj.weight"] = normal(a.hidden, a.hidden)
    tensors[p + "self_attn.k_proj.weight"] = normal(kv, a.hidden)
    tensors[p + "self_attn.v_proj.weight"] = normal(kv, a.hidden)
    tensors[p + "self_attn.o_proj.weight"] = normal(a.hidden, a.hidden)
    tensors[p + "mlp.gate_proj.weight"] = normal(a.ffn, a.hidden)
    tensors[p + "mlp.up_proj.weight"] = normal(a.ffn, a.hidden)
    tensors[p + "mlp.down_proj.weight"] = normal(a.hidden, a.ffn)
    tensors[p + "input_layernorm.weight"] = torch.ones(a.hidden, dtype=torch.bfloat16)
    tensors[p + "post_attention_layernorm.weight"] = torch.ones(a.hidden, dtype=torch.bfloat16)

# The safetensors format: an 8-byte little-endian header length, a JSON header of
# name → dtype, shape and byte offsets, then the raw little-endian tensors.
header, offset, names = {}, 0, sorted(tensors)
for name in names:
    n = tensors[name].numel() * 2
    header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape),
                    "data_offsets": [offset, offset + n]}
    offset += n
head = json.dumps(header).encode()
head += b" " * (-len(head) % 8)
with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(head)) + head)
    for name in names:
        f.write(tensors[name].contiguous().view(torch.int16).numpy().tobytes())

# A character-level tokenizer: the end-of-document token and printable ASCII.
vocab = {"<|endoftext|>": 0}
for i, c in enumerate(chr(x) for x in range(32, 127)):
    vocab[c] = i + 1
tokenizer = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 0, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True}],
    "normalizer": None, "pre_tokenizer": None, "post_processor": None,
    "decoder": {"type": "Fuse"},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
              "ignore_merges": False, "vocab": vocab, "merges": []},
}
json.dump(tokenizer, open(os.path.join(a.out, "tokenizer.json"), "w"))

# Documents: this Python's standard-library modules as printable ASCII.
files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
random.Random(0).shuffle(files)
with open(a.docs, "w") as out:
    written = 0
    for path in files:
        text = "".join(c for c in open(path, errors="ignore").read() if 32 <= ord(c) < 127)
        if len(text) > 200:
            out.write(json.dumps({"id": os.path.basename(path), "text": text}) + "\n")
            written += 1
        if written == a.docs_count:
            break
params = sum(t.numel() for t in tensors.values())
print(f"gpu_scorer: {params / 1e9:.3f}B parameters in {a.out}, {written} documents in {a.docs}")
