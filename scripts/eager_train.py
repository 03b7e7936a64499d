"""The tiny demo's training step written in PyTorch eager, to measure kiln-train against.

Reads a train step's `params` from a kiln plan (model, optimizer, micro-batch, accumulation)
and times optimizer steps of the same model as runtime/train/src/model.rs builds it
(pre-norm RMSNorm, RoPE in the rotate-half layout, grouped-query SDPA, SwiGLU, tied
embeddings, fp32), with the same step: accumulation over micro-batches, global-norm
clipping and AdamW (decoupled weight decay, none on 1-D parameters), on random token ids.
Prints one JSON line: {"tokens_per_s": …, "step_s": [...]}.

Used by `cargo bench -p kiln-train --bench step`, which runs it beside kiln-train in the
same process environment (same thread count, same Python venv's libtorch).
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


def rope_tables(seq_len, head_dim, base=10000.0):
    half = head_dim // 2
    inv = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / head_dim)
    angles = torch.arange(seq_len, dtype=torch.float64)[:, None] * inv[None, :]
    angles = torch.cat([angles, angles], dim=1)
    return angles.cos().float()[None, None], angles.sin().float()[None, None]


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Model(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        assert m["activation"] == "swiglu" and m["norm"] == "rmsnorm"
        assert m["position"] == "rope" and m["tied_embeddings"] and not m["bias"]
        self.m = m
        h, f, v = m["hidden"], m["ffn_hidden"], m["vocab"]
        qw, kvw = m["heads"] * m["head_dim"], m["kv_heads"] * m["head_dim"]
        std, rstd = 0.02, 0.02 / math.sqrt(2 * m["layers"])

        def p(*shape, std=None, fill=None):
            t = torch.empty(*shape)
            t.normal_(0, std) if std is not None else t.fill_(fill)
            return torch.nn.Parameter(t)

        self.embed = p(v, h, std=std)
        self.layers = torch.nn.ModuleList()
        for _ in range(m["layers"]):
            layer = torch.nn.ParameterDict(
                {
                    "attn_norm": p(h, fill=1.0),
                    "q": p(qw, h, std=std),
                    "k": p(kvw, h, std=std),
                    "v": p(kvw, h, std=std),
                    "o": p(h, qw, std=rstd),
                    "mlp_norm": p(h, fill=1.0),
                    "gate": p(f, h, std=std),
                    "up": p(f, h, std=std),
                    "down": p(h, f, std=rstd),
                }
            )
            self.layers.append(layer)
        self.final_norm = p(h, fill=1.0)
        cos, sin = rope_tables(m["seq_len"], m["head_dim"])
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)

    def forward(self, tokens, targets):
        m = self.m
        b, t = tokens.shape
        nh, nkv, hd = m["heads"], m["kv_heads"], m["head_dim"]
        eps = 1e-5
        x = F.embedding(tokens, self.embed)
        for L in self.layers:
            y = F.rms_norm(x, (x.shape[-1],), L["attn_norm"], eps)
            q = F.linear(y, L["q"]).view(b, t, nh, hd).transpose(1, 2)
            k = F.linear(y, L["k"]).view(b, t, nkv, hd).transpose(1, 2)
            v = F.linear(y, L["v"]).view(b, t, nkv, hd).transpose(1, 2)
            q, k = rotate(q, self.cos, self.sin), rotate(k, self.cos, self.sin)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=nkv != nh)
            a = a.transpose(1, 2).contiguous().view(b, t, nh * hd)
            x = x + F.linear(a, L["o"])
            y = F.rms_norm(x, (x.shape[-1],), L["mlp_norm"], eps)
            x = x + F.linear(F.silu(F.linear(y, L["gate"])) * F.linear(y, L["up"]), L["down"])
        x = F.rms_norm(x, (x.shape[-1],), self.final_norm, eps)
        logits = F.linear(x, self.embed)
        return F.cross_entropy(logits.view(-1, m["vocab"]).float(), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True, help="JSON file: a train step's params")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's table")
    a = ap.parse_args()
    params = json.load(open(a.params))
    m, opt, par = params["model"], params["optimizer"], params["parallel"]
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Model(m)
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": opt["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=1e-3,
        betas=(opt["beta1"], opt["beta2"]),
        eps=opt["eps"],
    )
    micro, accum, t = par["micro_batch"], par["accumulation"], m["seq_len"]
    gen = torch.Generator().manual_seed(1)

    def step():
        optimizer.zero_grad(set_to_none=False)
        for _ in range(accum):
            ids = torch.randint(0, m["vocab"], (micro, t + 1), generator=gen)
            loss = model(ids[:, :-1], ids[:, 1:])
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt["grad_clip"])
        optimizer.step()

    for _ in range(a.warmup):
        step()
    if a.profile:
        with torch.profiler.profile() as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    times = []
    for _ in range(a.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    tokens = micro * accum * t
    median = sorted(times)[len(times) // 2]
    print(json.dumps({"tokens_per_s": tokens / median, "step_s": times}))


if __name__ == "__main__":
    main()
