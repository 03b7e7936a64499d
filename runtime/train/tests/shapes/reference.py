"""An independent forward pass of kiln-train's decoder, for tests/shapes.rs.

Reads DIR/model.safetensors (the model's parameters by name, the token ids and the logits
kiln-train computed) and DIR/spec.json (the plan's model spec), computes the logits again
in plain PyTorch from the formulas, and prints {"max_diff": …, "scale": …} as JSON.

Written from the papers, not from model.rs: rotary embeddings as a multiplication by
e^{i·p·θ_j} of the complex numbers x_j + i·x_{j+d/2} over the first d = rotary_fraction ×
head_dim dimensions (Su et al. 2021, Sec. 3.4.2; GPT-NeoX's rotary_pct), θ_j =
base^(−2j/d); ALiBi's bias −m_h·(i − j) with m_h = 2^(−8(h+1)/H) (Press et al. 2022,
Sec. 3, H a power of two); the parallel block y = x + attn(ln1(x)) + mlp(ln2(x)) (GPT-NeoX)
with ln1 = ln2 when shared (GPT-J, PaLM); BLOOM's LayerNorm on the embeddings.
"""

import json
import math
import sys

import torch
from safetensors.torch import load_file


def layer_norm(x, p, name, spec):
    w = p[f"{name}.weight"]
    if spec["norm"] == "layernorm":
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + spec["norm_eps"]) * w + p[f"{name}.bias"]
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + spec["norm_eps"]) * w


def linear(x, p, name):
    y = x @ p[f"{name}.weight"].T
    b = p.get(f"{name}.bias")
    return y if b is None else y + b


def rotate(x, spec):
    """x: [b, heads, t, head_dim]; rotates the first d dimensions by position."""
    head_dim = x.shape[-1]
    d = round(spec["rotary_fraction"] * head_dim)
    t = x.shape[2]
    j = torch.arange(d // 2, dtype=torch.float64)
    theta = spec["rope_base"] ** (-2.0 * j / d)
    angle = torch.arange(t, dtype=torch.float64)[:, None] * theta[None, :]
    turn = torch.polar(torch.ones_like(angle), angle)  # e^{i p θ_j}
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2 : d].double()) * turn
    rotated = torch.cat([z.real, z.imag], dim=-1).to(x.dtype)
    return torch.cat([rotated, x[..., d:]], dim=-1)


def attention(x, p, pre, spec):
    b, t, _ = x.shape
    H, K, D = spec["heads"], spec["kv_heads"], spec["head_dim"]
    q = linear(x, p, f"{pre}.self_attn.q_proj").view(b, t, H, D).transpose(1, 2)
    k = linear(x, p, f"{pre}.self_attn.k_proj").view(b, t, K, D).transpose(1, 2)
    v = linear(x, p, f"{pre}.self_attn.v_proj").view(b, t, K, D).transpose(1, 2)
    if spec["position"] == "rope":
        q, k = rotate(q, spec), rotate(k, spec)
    group = H // K
    k = torch.stack([k[:, h // group] for h in range(H)], dim=1)
    v = torch.stack([v[:, h // group] for h in range(H)], dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    if spec["position"] == "alibi":
        assert H & (H - 1) == 0, "the reference computes ALiBi slopes for powers of two"
        slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)])
        scores = scores - slopes[:, None, None] * (i - j).float()
    scores = scores.masked_fill(j > i, float("-inf"))
    y = torch.softmax(scores, dim=-1) @ v
    return linear(y.transpose(1, 2).reshape(b, t, H * D), p, f"{pre}.self_attn.o_proj")


def mlp(x, p, pre, spec):
    if spec["activation"] == "swiglu":
        gate = linear(x, p, f"{pre}.mlp.gate_proj")
        h = gate * torch.sigmoid(gate) * linear(x, p, f"{pre}.mlp.up_proj")
    else:
        u = linear(x, p, f"{pre}.mlp.up_proj")
        if spec["activation"] == "relu":
            h = torch.clamp(u, min=0)
        else:  # GPT-2's tanh form of GeLU
            h = 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
    return linear(h, p, f"{pre}.mlp.down_proj")


def main(out_dir):
    spec = json.load(open(f"{out_dir}/spec.json"))
    p = load_file(f"{out_dir}/model.safetensors")
    tokens = p.pop("tokens")
    expected = p.pop("logits")
    x = p["model.embed_tokens.weight"][tokens]
    if spec["embedding_norm"]:
        x = layer_norm(x, p, "model.embed_layernorm", spec)
    block = spec["block"]
    for layer in range(spec["layers"]):
        pre = f"model.layers.{layer}"
        h1 = layer_norm(x, p, f"{pre}.input_layernorm", spec)
        if block["kind"] == "sequential":
            x = x + attention(h1, p, pre, spec)
            x = x + mlp(layer_norm(x, p, f"{pre}.post_attention_layernorm", spec), p, pre, spec)
        else:
            shared = block["shared_norm"]
            assert shared == (f"{pre}.post_attention_layernorm.weight" not in p)
            h2 = h1 if shared else layer_norm(x, p, f"{pre}.post_attention_layernorm", spec)
            x = x + attention(h1, p, pre, spec) + mlp(h2, p, pre, spec)
    x = layer_norm(x, p, "model.norm", spec)
    head = p["lm_head.weight"] if not spec["tied_embeddings"] else p["model.embed_tokens.weight"]
    logits = x @ head.T
    print(json.dumps({
        "max_diff": (logits - expected).abs().max().item(),
        "scale": expected.abs().max().item(),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
