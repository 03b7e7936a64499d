"""Writes experiments/measured/*.kiln: one experiment per measured run of
../shared/reference/measured.yaml that the language can express, each carrying the
measured numbers in a `# measured: {json}` line that tests/validation.rs compares with
kiln's prediction (docs/validation.md). Run: .venv/bin/python scripts/measured_kiln.py

Everything a row does not state is filled with a named assumption, written as a comment
beside the value, so a reader sees what kiln was told and what it was not.
"""

import json
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "reference" / "measured.yaml"
OUT = ROOT / "experiments" / "measured"

# measured.yaml's GPU names -> (the node preset, a gpu override or None, a comment).
NODES = {
    "h100_sxm": ("dgx_h100", None, "H100 SXM in DGX H100 nodes"),
    "h100": ("dgx_h100", None, "form factor not stated: assumed H100 SXM (DGX H100)"),
    "a100_80gb": ("dgx_a100", None, "A100 80GB in DGX A100 nodes"),
    "a100_40gb": ("dgx_a100", "a100_40gb", "A100 40GB in DGX A100 nodes"),
}

# Sharding as the rows name it -> ZeRO stage.
# measured.yaml's engine names → kiln's `engine =`.
ENGINES = {
    "llm-foundry/composer-fsdp": "composer",
    "megatron-lm": "megatron",
    "nemo": "nemo",
    "nanotron": "nanotron",
    "megatron-deepspeed": "deepspeed",
    "olmo-core": "torchtitan",
}


def extras_of(run):
    return run.get("extras") or {}


def zero_stage(text, engine):
    if text is None:
        # Megatron-LM and NeMo runs use the distributed optimizer by default (ZeRO-1).
        if engine in ("megatron-lm", "nemo", "megatron-deepspeed"):
            return 1, "not stated: the distributed optimizer (ZeRO-1), Megatron's default"
        return 0, "not stated: assumed plain data parallelism"
    t = text.upper()
    if "FULL_SHARD" in t or "DATAPARALLELTYPE.FSDP" in t:
        return 3, text
    if "SHARD_GRAD_OP" in t:
        return 2, text
    m = re.search(r"ZERO-(\d)", t)
    if m:
        return int(m.group(1)), text
    return None, text


# Which of nanotron's two peaks ("Mem Alloc (GB)", "Mem Res (GB)") the Playbook's figure
# shows as "GPU memory".
NANOTRON_MEMORY_KIND = "reserved"


def nanotron_stage_layers(model, pp):
    """Layers per pipeline stage as nanotron assigns them (src/nanotron/models/base.py,
    build_model): blocks in order (embedding, decoder layers, final norm, output layer, cast,
    loss) with costs 0, 4h² + 3·ffn·h per decoder layer and V·h for the output layer; a
    stage takes blocks until their cumulative cost passes its share (r + 1)/pp of the total,
    the block that passes it included."""
    h, ffn, vocab, layers = model["hidden"], model["ffn_hidden"], model["vocab"], model["layers"]
    costs = [0] + [4 * h * h + 3 * ffn * h] * layers + [0, vocab * h, 0, 0]
    kinds = ["embedding"] + ["layer"] * layers + ["norm", "output", "cast", "loss"]
    total = sum(costs)
    counts, stage, cumulative = [0] * pp, 0, 0
    for kind, cost in zip(kinds, costs):
        cumulative += cost
        if kind == "layer":
            counts[stage] += 1
        if cumulative > total * (stage + 1) / pp and stage < pp - 1:
            stage += 1
    return counts


def slug(run_id):
    return re.sub(r"[^a-z0-9]+", "_", run_id.lower()).strip("_")


def sibling_layout(run, runs):
    """Where a run states no tensor or pipeline size, the layout of the same model (layers,
    hidden, heads) in another row of the same source that states one: what an engineer
    reproducing the run would start from. None where no such row exists."""
    par, model = run["parallel"], run["model"]
    if par.get("tensor") is not None or par.get("pipeline") is not None:
        return None
    shape = lambda r: tuple(r["model"].get(k) for k in ("layers", "hidden", "heads"))
    source = run["id"].split(".")[0]
    for other in runs:
        if other is run or other["id"].split(".")[0] != source or shape(other) != shape(run):
            continue
        if other["parallel"].get("tensor") is None or None in shape(other):
            continue
        layout = {k: other["parallel"].get(k) for k in ("tensor", "pipeline")}
        per_replica = (layout["tensor"] or 1) * (layout["pipeline"] or 1)
        if run.get("gpus") and run["gpus"] % per_replica == 0 and model.get("layers"):
            return dict(layout, taken_from=other["id"])
    return None


def kiln_text(run, runs=()):
    """The experiment file of one run, or the reason it cannot be expressed."""
    model, par, meas = run["model"], run["parallel"], run.get("measured") or {}
    layout_note = ""
    sibling = sibling_layout(run, runs)
    if sibling is not None:
        par = dict(par, tensor=sibling["tensor"], pipeline=sibling["pipeline"])
        layout_note = f"  # not stated: the layout of {sibling['taken_from']}"
    if run.get("gpu") not in NODES:
        return None, f"GPU `{run.get('gpu')}` has no preset"
    if run.get("gpus") is None:
        return None, "GPU count not stated"
    ffn_note = ""
    if model.get("ffn_hidden") is None and model.get("hidden") and run["engine"] in (
        "megatron-lm",
        "megatron-deepspeed",
    ):
        # Megatron-LM's arguments.py: --ffn-hidden-size defaults to 4 x --hidden-size.
        model = dict(model, ffn_hidden=4 * model["hidden"])
        ffn_note = "  # not stated: Megatron-LM's default --ffn-hidden-size, 4 x hidden"
    for key in ("layers", "hidden", "heads", "ffn_hidden", "vocab", "seq_len"):
        if model.get(key) is None:
            return None, f"model {key} not stated"
    if meas.get("tokens_per_s_per_gpu") is None and meas.get("mfu") is None:
        return None, "neither tokens/s per GPU nor MFU measured"
    if par.get("global_batch") is None:
        return None, "global batch not stated"
    gpus = run["gpus"]
    tensor = par.get("tensor") or 1
    pipeline = par.get("pipeline") or 1
    context = par.get("context") or 1
    if gpus % (tensor * pipeline * context):
        return None, "GPUs not a multiple of tensor x pipeline x context"
    data = gpus // (tensor * pipeline * context)
    zero, zero_note = zero_stage(par.get("zero_fsdp"), run["engine"])
    if zero is None:
        return None, f"sharding `{zero_note}` not understood"
    node, gpu_override, node_note = NODES[run["gpu"]]
    seq = model["seq_len"]
    global_batch = par["global_batch"]
    micro = par.get("micro_batch")
    per_step = data * (micro or 1)
    if micro is None:
        if global_batch % data:
            return None, "micro batch not stated and the global batch does not divide"
        # Smallest micro batch that fills a pipeline; 1 without one.
        micro = 1
    if global_batch % (data * micro):
        return None, "global batch not a whole number of micro-batches per rank"

    lines = []
    src = run["source"]
    lines.append(f"# {run['id']}: {src.get('ref', '').strip()}")
    if src.get("where"):
        where = " ".join(str(src["where"]).split())
        lines.append(f"# where: {where}")
    lines.append(f"# engine: {run['engine']} (measured.yaml); generated by scripts/measured_kiln.py")
    measured = {
        "id": run["id"],
        "source": run["id"].split(".")[0],
        "engine": run["engine"],
        "gpu": run["gpu"],
        "gpus": gpus,
        "precision": run.get("precision"),
        "tokens_per_s_per_gpu": meas.get("tokens_per_s_per_gpu"),
        "mfu_percent": meas.get("mfu"),
        "tflops_per_gpu": meas.get("tflops_per_gpu"),
        "step_time_s": meas.get("step_time_s"),
        "peak_memory_gb": meas.get("peak_memory_gb"),
    }
    if meas.get("peak_memory_gb") is not None and run["engine"] == "nanotron":
        # nanotron's log_throughput (src/nanotron/helpers.py) prints the peak as
        # torch.cuda.max_memory_*() / 1024**3 on world rank 0, the first pipeline stage:
        # GiB, labelled "GB".
        measured["peak_memory_gib"] = meas["peak_memory_gb"]
        measured["peak_memory_kind"] = NANOTRON_MEMORY_KIND
        measured["peak_memory_stage"] = "first"
    lines.append("# measured: " + json.dumps(measured, sort_keys=True))
    lines.append("")
    lines.append(f"import std.nodes.{node}")
    if gpu_override:
        lines.append(f"import std.gpus.{gpu_override}")
    lines.append("")
    name = slug(run["id"])
    act = model.get("activation") or "gelu"
    kv = model.get("kv_heads") or model["heads"]
    lines.append(f"model m_{name} {{")
    lines.append(f"  layers = {model['layers']}")
    lines.append(f"  hidden = {model['hidden']}")
    lines.append(f"  ffn_hidden = {model['ffn_hidden']}{ffn_note}")
    lines.append(f"  heads = {model['heads']}")
    lines.append(f"  kv_heads = {kv}")
    lines.append(f"  vocab = {model['vocab']}")
    lines.append(f"  seq_len = {seq}")
    lines.append(f"  activation = {act}" + ("" if model.get("activation") else "  # not stated: assumed"))
    shape_note = str(((run.get("derived") or {}).get("model_shape") or {}).get("value", ""))
    if "ties embeddings" in shape_note:
        lines.append("  tied_embeddings = true  # derived.model_shape: the script ties embeddings for this size")
    if run["engine"] == "llm-foundry/composer-fsdp":
        # MPT (llmfoundry/models/mpt/configuration_mpt.py): LayerNorm, and learned position
        # embeddings by default (learned_pos_emb = True; the benchmark yamls turn on no ALiBi).
        lines.append("  norm = layernorm")
        lines.append("  position = learned")
    lines.append("}")
    lines.append("")
    lines.append(f"experiment e_{name} {{")
    lines.append(f"  model = m_{name}")
    lines.append("  objective = fixed")
    lines.append('  allow = ["under-trained", "over-trained", "repeated-data"]')
    lines.append(f"  batch = {global_batch * seq} tokens  # {global_batch} sequences of {seq}")
    lines.append(f"  tokens = {global_batch * seq * 1000}  # stand-in: 1,000 steps")
    nodes = max(1, gpus // 8)
    if gpus < 8:
        node_expr = f"{node} {{ gpus_per_node = {gpus} }}"
    elif gpu_override:
        node_expr = f"{node} {{ gpu = {gpu_override} }}"
    else:
        node_expr = node
    if gpus >= 8 and gpus % 8:
        return None, "GPU count not a whole number of 8-GPU nodes"
    if gpus < 8 and gpu_override:
        node_expr = f"{node} {{ gpu = {gpu_override}, gpus_per_node = {gpus} }}"
    lines.append(f"  cluster {{ node = {node_expr}, nodes = {nodes} }}  # {node_note}")
    engine = ENGINES[run["engine"]]
    lines.append(f"  engine = {engine}")
    if extras_of(run).get("torch_compile") is True:
        lines.append("  compile = true  # extras.torch_compile")
    prec = run.get("precision")
    if prec == "fp8":
        lines.append("  precision = fp8_mixed")
    elif prec == "bf16":
        lines.append("  precision = bf16_mixed")
    else:
        lines.append("  precision = bf16_mixed  # not stated: assumed")
    lines.append(f"  tokenizer = bpe {{ vocab = {model['vocab']} }}")
    lines.append("  parallel {")
    lines.append(f"    tensor = {tensor}{layout_note}")
    lines.append(f"    pipeline = {pipeline}{layout_note}")
    if par.get("virtual_stages"):
        lines.append(f"    virtual_stages = {par['virtual_stages']}")
    if run["engine"] == "nanotron" and pipeline > 1:
        split = ", ".join(str(n) for n in nanotron_stage_layers(model, pipeline))
        lines.append(f"    stage_layers = [{split}]  # nanotron's cost-balanced pipeline split")
    lines.append(f"    context = {context}")
    lines.append(f"    data = {data}")
    lines.append(f"    zero = {zero}  # {zero_note}")
    lines.append(f"    micro_batch = {micro}" + ("" if par.get("micro_batch") else "  # not stated: assumed"))
    rec = par.get("recompute")
    if rec in ("none", "full", "selective"):
        lines.append(f"    recompute = {rec}")
    else:
        lines.append("    recompute = none  # not stated: assumed")
    extras = run.get("extras") or {}
    tp_overlap = "--tp-comm-overlap" in str(extras.get("comm_overlap", "")) and tensor > 1
    if par.get("sequence_parallel") is True and tensor > 1:
        lines.append("    sequence_parallel = true")
    elif run["engine"] == "nanotron" and tensor > 1:
        # nanotron scripts/scaling_benchmarks.py (the sweep's generator): tp_mode defaults to
        # REDUCE_SCATTER, nanotron's sequence parallelism.
        lines.append("    sequence_parallel = true  # nanotron's sweep: tp_mode REDUCE_SCATTER")
    elif tp_overlap:
        # megatron/training/arguments.py refuses --tp-comm-overlap without it.
        lines.append("    sequence_parallel = true  # implied: --tp-comm-overlap requires it")
    if tp_overlap:
        lines.append("    tp_comm_overlap = true  # extras.comm_overlap: --tp-comm-overlap")
    lines.append("  }")
    lines.append('  source web { path = "data/web.jsonl" }')
    lines.append("  phase main { mix { web = 100% }, lr = cosine { peak = 3e-4 } }")
    lines.append("}")
    return "\n".join(lines) + "\n", None


def main():
    runs = yaml.safe_load(SOURCE.read_text())["runs"]
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.kiln"):
        old.unlink()
    skipped = []
    written = 0
    for run in runs:
        text, why = kiln_text(run, runs)
        if text is None:
            skipped.append((run["id"], why))
            continue
        (OUT / f"{slug(run['id'])}.kiln").write_text(text)
        written += 1
    # The canonical layout, as `kiln fmt --check` in scripts/test expects (build kiln first).
    kiln = ROOT / "target" / "debug" / "kiln"
    subprocess.run([str(kiln), "fmt", *sorted(str(p) for p in OUT.glob("*.kiln"))], check=True)
    readme = [
        "# Measured runs as kiln experiments",
        "",
        "Generated by `.venv/bin/python scripts/measured_kiln.py` from",
        "`../shared/reference/measured.yaml` (each file's first lines cite its source). Each file",
        "carries the measured numbers in a `# measured: {json}` line; `tests/validation.rs`",
        "compares them with kiln's predictions and writes `docs/validation.md`.",
        "",
        f"{written} of {len(runs)} runs are expressed; the others, and why:",
        "",
    ]
    readme += [f"- `{i}`: {why}" for i, why in skipped]
    (OUT / "README.md").write_text("\n".join(readme) + "\n")
    print(f"measured_kiln: {written} experiments written, {len(skipped)} skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
