"""A tiny random LlamaForCausalLM saved as a Hugging Face directory, and its logits.

Usage: make_llama.py OUT_DIR. Writes OUT_DIR/model (config.json, model.safetensors) and
OUT_DIR/logits.json ({"ids": [[...]], "logits": [[[...]]]}) for a fixed batch of ids, in fp32.
"""
import json
import sys
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

out = Path(sys.argv[1])
torch.manual_seed(0)
config = LlamaConfig(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,  # GQA
    max_position_embeddings=32,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    tie_word_embeddings=False,
    attn_implementation="eager",
)
model = LlamaForCausalLM(config).eval()
with torch.no_grad():
    # Random, not zero-mean norms: a loader that skipped them would differ.
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.uniform_(0.5, 1.5)
model.save_pretrained(out / "model", safe_serialization=True)
ids = torch.randint(0, config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    logits = model(input_ids=ids).logits.float()
(out / "logits.json").write_text(json.dumps({"ids": ids.tolist(), "logits": logits.tolist()}))
