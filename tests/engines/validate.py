#!/usr/bin/env python3
"""Round trips of what `kiln emit` writes for the engine targets through the engines' own code.

    .venv/bin/python tests/engines/validate.py --deepspeed DIR --torchtitan DIR \
        --megatron DIR --kubernetes DIR [--warnings TARGET=FILE ...]

Each DIR is the output of `kiln emit --target T -o DIR` (plan.json inside). Every file is
loaded by the engine's own configuration code and every value of the plan that the engine
can express is read back from what the engine built and compared with the plan, field by
field, in a table per engine and phase: field | plan value | engine value | status.

- DeepSpeed (in .venv, torch 2.11): deepspeed.runtime.config.DeepSpeedConfig with an mpu
  reporting the plan's data-parallel size on a one-process gloo group; the scheduler built
  by deepspeed.runtime.lr_schedules and replayed against kiln's schedule.
- torchtitan (in .venv-engines, torch 2.14.1): torchtitan.config.ConfigManager loads the
  emitted module (`--module`, `--config`), ParallelDims validates the layout, the model's
  configuration (model args) is read and the model built on the meta device, the LR
  scheduler built and replayed.
- Megatron-LM (in .venv-engines): megatron-core 0.19 ships megatron.training, so the
  script's arguments go through Megatron-LM's own parser, validate_args and
  core_transformer_config_from_args (a transcription of the parser, MEGATRON_LM_FLAGS, is
  the fallback when megatron.training is missing); a GPTModel is built on the meta device
  and OptimizerParamScheduler replays the schedule.
- Kubernetes (in .venv-engines): every document validated against the Kubernetes API
  schemas of KUBERNETES_VERSIONS (kubernetes-validate, strict: unknown fields refused), and
  each step's Job compared with the plan.

Sections run in the virtual environment that holds their engine (ENGINE_VENV): run from
another Python, the script starts itself again there for those sections.

Status of a row: `equal`; `not expressed: K-E001 …` only when the field is listed in
NOT_EXPRESSED for that engine and (given --warnings TARGET=FILE, the stderr of `kiln emit`)
kiln emit printed the matching K-E001 warning; `DIFFERS` otherwise, which fails. Every
K-E001 that kiln emit printed must be listed in NOT_EXPRESSED (the two mirror each other).
`TODO` rows are known emission or plan gaps listed in EMISSION_TODO: shown, not failed.

Exit status: 0 when everything validated, 1 when anything was rejected or differs from
the plan, 3 when an engine could not be imported (the reason is printed).
"""

import argparse
import contextlib
import dataclasses
import importlib
import importlib.machinery
import importlib.util
import io
import json
import logging
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[2]

# Which virtual environment runs each section (scripts/setup makes both; tests/engines/README.md).
ENGINE_VENV = {
    "deepspeed": ".venv",
    "torchtitan": ".venv-engines",
    "megatron": ".venv-engines",
    "kubernetes": ".venv-engines",
}

# The Kubernetes versions whose API schemas the manifests must satisfy: the three newest
# minor versions that kubernetes-validate 1.37.0 ships.
KUBERNETES_VERSIONS = ["1.35.0", "1.36.0", "1.37.0"]

# Fields of the plan an engine cannot express: field -> (a regular expression matching the
# K-E001 warning that `kiln emit --target ENGINE` prints, the reason). A row whose engine
# value differs from the plan is "not expressed" only when listed here and, given the
# emit's warnings, when the matching warning was printed; every K-E001 printed must match
# an entry here.
_DS_ALONE = r"cannot express the model, the data mix, the number of steps, the seed, and the checkpoint and evaluation intervals"
NOT_EXPRESSED = {
    "deepspeed": {
        **{
            f"model.{k}": (_DS_ALONE, "a DeepSpeed config holds no model")
            for k in (
                "layers", "hidden", "ffn_hidden", "heads", "kv_heads", "head_dim", "vocab", "seq_len",
                "tied_embeddings", "activation", "norm", "norm_eps", "position", "rope_base", "bias",
                "dropout", "init_std", "params", "rotary_fraction", "block", "embedding_norm",
            )
        },
        "tokenizer": (_DS_ALONE, "a DeepSpeed config holds no tokenizer"),
        "phase.mix": (_DS_ALONE, "a DeepSpeed config holds no data"),
        "phase.end_step": (_DS_ALONE, "the training loop, not the config, counts steps"),
        "seed": (_DS_ALONE, "the training script seeds"),
        "schedule.checkpoint_every_steps": (_DS_ALONE, "the training script saves checkpoints"),
        "schedule.checkpoint_keep": (_DS_ALONE, "the training script saves checkpoints"),
        "checkpoint.dir": (_DS_ALONE, "the training script saves checkpoints"),
        "checkpoint.load": (_DS_ALONE, "the training script loads checkpoints"),
        "schedule.eval_every_steps": (_DS_ALONE, "the training script evaluates"),
        "schedule.eval_tokens": (_DS_ALONE, "the training script evaluates"),
        "topology.tensor": (r"cannot express tensor parallelism", "DeepSpeed's config has no tensor parallelism (Megatron-DeepSpeed's mpu does)"),
        "topology.pipeline": (r"cannot express pipeline parallelism", "DeepSpeed's pipeline is built in the model code (PipelineModule)"),
        "topology.stage_layers": (r"cannot express pipeline parallelism", "DeepSpeed's pipeline is built in the model code (PipelineModule)"),
        "parallel.recompute": (r"cannot express `(full|selective|selective_op)` activation recomputation", "DeepSpeed checkpoints activations where the model code calls deepspeed.checkpointing"),
        "precision": (r"cannot express fp8", "DeepSpeed's config has no fp8"),
        "schedule.batch_ramp": (r"cannot express a batch ramp", "train_batch_size is one number; the ramp's steps train full batches on a schedule in steps"),
    },
    "torchtitan": {
        "model.activation": (r"cannot express the `\w+` activation", "torchtitan builds Llama 3's SwiGLU"),
        "model.norm": (r"cannot express `layernorm` normalization", "torchtitan builds Llama 3's RMSNorm"),
        "model.position": (r"cannot express `\w+` positions", "torchtitan builds Llama 3's RoPE"),
        "model.rope_base": (r"cannot express `\w+` positions", "no rotary embedding without RoPE"),
        "model.rotary_fraction": (r"cannot express (rotary embeddings on [\d.]+ of each head|`\w+` positions)", "torchtitan's Llama 3 rotates every dimension (and always has RoPE)"),
        "model.block": (r"cannot express the parallel attention \+ MLP block", "torchtitan's Llama 3 block is sequential"),
        "model.embedding_norm": (r"cannot express a norm on the embeddings", "torchtitan's Llama 3 has no embedding norm"),
        "model.bias": (r"cannot express biases", "torchtitan's Llama 3 has no biases"),
        "model.init_std": (r"cannot express an initialisation of std", "torchtitan's Llama 3 initialises with its own stds (output projections depth-scaled)"),
        "model.dropout": (r"cannot express dropout", "torchtitan's Llama 3 has no dropout"),
        "model.params": (r"cannot express (the `\w+` activation|`layernorm` normalization|`\w+` positions|biases|the parallel attention \+ MLP block|a norm on the embeddings)", "torchtitan builds Llama 3's architecture"),
        "precision": (r"cannot express fp16 mixed precision", "torchtitan trains in bf16 or fp32"),
        "parallel.zero": (r"cannot express ZeRO stage 1", "FSDP shards parameters and gradients too"),
        "parallel.recompute": (r"cannot express (`\w+` activation recomputation|`recompute = selective`)", "torchtitan's activation checkpointing is selective by op or full; Korthikanti's selective is none under FlexAttention"),
        "schedule.eval_tokens": (r"cannot express evaluation on the mix steps' held-out tokens", "torchtitan's validator reads a registered dataset"),
        "schedule.eval_every_steps": (r"cannot express evaluation on the mix steps' held-out tokens", "the validator is left off"),
        "topology.stage_layers": (r"cannot express (uneven|the pipeline split)", "torchtitan splits the pipeline itself"),
        "phase.lr": (r"cannot express .*(warm-up|schedule)", "torchtitan's scheduler"),
        "schedule.batch_ramp": (r"cannot express a batch ramp", "training.global_batch_size is one number; the ramp's steps train full batches on a schedule in steps"),
    },
    "megatron": {
        "parallel.zero": (r"cannot express ZeRO stage \d with the distributed optimizer", "the distributed optimizer shards optimizer states only (ZeRO 1)"),
        "parallel.recompute": (r"cannot express torchtitan's op-level selective recomputation", "Megatron-LM recomputes selectively (the attention core) or fully"),
        "model.vocab": (r"cannot express a vocabulary of \d+ tokens with tensor parallelism \d+", "Megatron-LM pads the vocabulary to a multiple of the tensor size"),
        "model.params": (r"cannot express (a vocabulary of \d+ tokens with tensor parallelism \d+|a norm on the embeddings|the parallel attention \+ MLP block with one shared norm)", "the padded vocabulary's rows, the embedding norm, a shared norm"),
        "model.block": (r"cannot express the parallel attention \+ MLP block", "megatron-core's TransformerLayer is sequential"),
        "model.embedding_norm": (r"cannot express a norm on the embeddings", "megatron-core's GPTModel has no embedding norm"),
        "schedule.checkpoint_keep": (r"cannot express keeping only the last \d+ checkpoints", "Megatron-LM keeps every checkpoint"),
        "model.position": (r"cannot express `\w+` positions", "Megatron-LM's position types"),
        "model.activation": (r"cannot express the `\w+` activation", "Megatron-LM's activations"),
        "schedule.eval_tokens": (r"cannot express evaluating on \S+ tokens", "Megatron-LM evaluates whole global batches (--eval-iters)"),
    },
    "kubernetes": {
        "step.after": (r"cannot express dependencies between steps", "Jobs start together; the order is annotated (kiln.dev/after) for a controller"),
    },
}

# Differences caused by emission that are being fixed (issue 16): (engine, field) -> what is
# wrong, or (the plan value it applies to, what is wrong). Shown as "DIFFERS (TODO …)" without failing; clear an entry when the emission is
# fixed (a row that became equal says so in the output, so stale entries are visible).
EMISSION_TODO = {
}

MISSING = object()  # a field the plan does not hold (yet)


class N:
    """An engine value with a note for the table."""

    def __init__(self, value, note):
        self.value, self.note = value, note

ABSENT = "(absent)"  # a value the engine's configuration has no place for


class Report:
    def __init__(self):
        self.failures = 0
        self.skipped = 0
        self.summary = []  # (engine, label, Counter of statuses)
        self.todo = []  # (engine, label, field, plan, engine value, reason)

    def section(self, title):
        print(f"\n== {title}")

    def ok(self, msg):
        print(f"  ok    {msg}")

    def note(self, msg):
        print(f"  note  {msg}")

    def fail(self, msg):
        self.failures += 1
        print(f"  FAIL  {msg}")

    def skip(self, msg):
        self.skipped += 1
        print(f"  SKIP  {msg}")

    def check(self, what, got, want):
        if same(got, want):
            return True
        self.fail(f"{what}: emitted {got!r}, the plan says {want!r}")
        return False

    def checks(self, label, pairs):
        bad = [p for p in pairs if not self.check(f"{label}: {p[0]}", *p[1:])]
        if not bad:
            self.ok(f"{label}: {', '.join(p[0] for p in pairs)} match the plan")


def same(got, want):
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want or (isinstance(got, bool) and isinstance(want, bool) and got == want)
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return got == want or math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-300)
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(got) == len(want) and all(same(a, b) for a, b in zip(got, want))
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    return got == want


def show(v):
    if v is MISSING:
        return "(not in plan)"
    if isinstance(v, float):
        text = repr(v)
    elif isinstance(v, dict):
        text = ", ".join(f"{k}: {show(x)}" for k, x in v.items())
    else:
        text = str(v)
    return text if len(text) <= 60 else text[:57] + "..."


class RoundTrip:
    """The rows of one engine's table for one emitted file."""

    def __init__(self, r, engine, label, warnings):
        self.r, self.engine, self.label, self.warnings = r, engine, label, warnings
        self.rows = []

    def row(self, field, plan, engine, note=""):
        if isinstance(engine, N):
            engine, note = engine.value, engine.note or note
        self.rows.append((field, plan, engine, note))

    def status(self, field, plan, engine):
        """(kind, text) of a row: kind is equal, not expressed, todo or DIFFERS."""
        todo = EMISSION_TODO.get((self.engine, field))
        if isinstance(todo, tuple):
            todo = todo[1] if same(plan, todo[0]) else None
        if plan is MISSING:
            return "todo", "TODO: the plan has no such field yet"
        if same(engine, plan):
            if todo:
                return "equal", f"equal (EMISSION_TODO entry is stale: {todo})"
            return "equal", "equal"
        listed = NOT_EXPRESSED.get(self.engine, {}).get(field)
        if listed:
            pattern, reason = listed
            if self.warnings is None:
                return "not expressed", f"not expressed: K-E001 {reason} (kiln emit's warnings not given)"
            if any(re.search(pattern, w) for w in self.warnings):
                return "not expressed", f"not expressed: K-E001 {reason}"
        if todo:
            return "todo", f"DIFFERS (TODO emission: {todo})"
        if listed:
            return "DIFFERS", "DIFFERS (listed as not expressed, but kiln emit printed no matching K-E001)"
        return "DIFFERS", "DIFFERS"

    def finish(self):
        counts = Counter()
        lines = []
        for field, plan, engine, note in self.rows:
            kind, text = self.status(field, plan, engine)
            counts[kind] += 1
            if note:
                text = f"{text} [{note}]"
            lines.append((field, show(plan), show(engine), text))
            if kind == "DIFFERS":
                self.r.failures += 1
            if kind == "todo":
                self.r.todo.append((self.engine, self.label, field, show(plan), show(engine), text))
        w = [max(len(x[i]) for x in lines + [("field", "plan value", "engine value", "status")]) for i in range(3)]
        print(f"\n  round trip: {self.label}")
        print(f"  | {'field':<{w[0]}} | {'plan value':<{w[1]}} | {'engine value':<{w[2]}} | status")
        print(f"  |{'-' * (w[0] + 2)}|{'-' * (w[1] + 2)}|{'-' * (w[2] + 2)}|-------")
        for f, p, e, s in lines:
            print(f"  | {f:<{w[0]}} | {p:<{w[1]}} | {e:<{w[2]}} | {s}")
        self.r.summary.append((self.engine, self.label, counts))
        print(
            f"  {self.label}: {counts['equal']} equal, {counts['DIFFERS']} differ, "
            f"{counts['not expressed']} not expressed, {counts['todo']} TODO"
        )
        return counts


def mirror_warnings(r, engine, warnings):
    """Every K-E001 that kiln emit printed is listed in NOT_EXPRESSED[engine]."""
    if warnings is None:
        r.note(f"{engine}: kiln emit's warnings not given (--warnings {engine}=FILE): K-E001 not mirrored")
        return
    listed = NOT_EXPRESSED.get(engine, {}).values()
    for w in warnings:
        if not any(re.search(p, w) for p, _ in listed):
            r.fail(f"kiln emit printed K-E001 '{w}', which NOT_EXPRESSED['{engine}'] does not list")
    if warnings:
        r.ok(f"{engine}: all {len(warnings)} K-E001 warning(s) of kiln emit are listed in NOT_EXPRESSED")


def read_warnings(path, target):
    """The K-E001 messages that `kiln emit --target TARGET` printed (its stderr)."""
    if path is None:
        return None
    text = re.sub(r"\x1b\[[0-9;]*m", "", Path(path).read_text())
    return re.findall(rf"warning\[K-E001\]: the {target} target (cannot express .*)", text)


def plan_model(m, *names):
    for n in names:
        if n in m:
            return m[n]
    return MISSING


def block_name(block):
    """The plan's `block` as one word: sequential, parallel (shared norm) or parallel (two norms)."""
    if block["kind"] == "sequential":
        return "sequential"
    return "parallel (shared norm)" if block["shared_norm"] else "parallel (two norms)"


def model_rows(rt, m, got):
    """The model's rows: got maps each field to the engine's value."""
    plan = {
        "model.layers": m["layers"],
        "model.hidden": m["hidden"],
        "model.ffn_hidden": m["ffn_hidden"],
        "model.heads": m["heads"],
        "model.kv_heads": m["kv_heads"],
        "model.head_dim": m["head_dim"],
        "model.vocab": plan_model(m, "padded_vocab", "vocab"),
        "model.seq_len": m["seq_len"],
        "model.tied_embeddings": m["tied_embeddings"],
        "model.activation": m["activation"],
        "model.norm": m["norm"],
        "model.norm_eps": plan_model(m, "norm_eps", "norm_epsilon"),
        "model.position": m["position"],
        "model.rope_base": plan_model(m, "rope_base") if m["position"] == "rope" else None,
        "model.rotary_fraction": plan_model(m, "rotary_fraction") if m["position"] == "rope" else None,
        "model.block": block_name(m["block"]) if "block" in m else MISSING,
        "model.embedding_norm": plan_model(m, "embedding_norm"),
        "model.bias": m["bias"],
        "model.dropout": m["dropout"],
        "model.init_std": plan_model(m, "init_std"),
        "model.params": m["params"],
    }
    for field, want in plan.items():
        rt.row(field, want, got.get(field, ABSENT))
@contextlib.contextmanager
def quiet():
    """Silences the engines' logging and prints while they load."""
    level = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        logging.disable(level)


# --------------------------------------------------------------------------------------
# The plan and kiln's schedule


def load_plan(directory):
    path = Path(directory) / "plan.json"
    with open(path) as f:
        return json.load(f)


def kiln_lr(lr, step, steps, clock=None):
    """kiln's LrSchedule::at_clock (plan/src/schedule.rs): `clock(k)` is the position after
    the phase's first k steps (k itself; under a batch ramp the samples they trained)."""
    c = clock or (lambda k: k)

    def frac(a, b):
        return 1.0 if b == 0 else a / b

    def span(a, b):
        return max(c(b) - c(a), 0)

    kind = lr["kind"]
    if kind == "constant":
        w = lr["warmup_steps"]
        return lr["value"] * frac(c(step + 1), c(w)) if step < w else lr["value"]
    if kind == "cosine":
        w, peak, final = lr["warmup_steps"], lr["peak"], lr["final_lr"]
        if step < w:
            return peak * frac(c(step + 1), c(w))
        progress = min(frac(span(w, step), span(w, steps)), 1.0)
        return final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * progress))
    if kind == "wsd":
        w, peak, d = lr["warmup_steps"], lr["peak"], lr["decay_steps"]
        start = max(steps - d, 0)
        if step < w:
            return peak * frac(c(step + 1), c(w))
        if step < start:
            return peak
        return peak * (1.0 - min(frac(span(start, step), span(start, start + d)), 1.0))
    return lr["from"] + (lr["to"] - lr["from"]) * min(frac(c(step), c(steps)), 1.0)


def phase_clock(phase):
    """kiln's PhaseSchedule::samples_before as the learning rate's clock when the batch
    changes within the phase (a ramp); None (steps) otherwise."""
    segs = phase.get("batch") or []
    if len({s["global_batch"] for s in segs}) <= 1:
        return None
    start, steps = phase["start_step"], phase["steps"]

    def before(k):
        if k < 0:
            return k * segs[0]["global_batch"]
        total = max(k - steps, 0) * segs[-1]["global_batch"]
        end = start + min(k, steps)
        for i, seg in enumerate(segs):
            nxt = segs[i + 1]["first_step"] if i + 1 < len(segs) else start + steps
            a, b = max(seg["first_step"], start), min(nxt, end)
            if b > a:
                total += (b - a) * seg["global_batch"]
        return total

    return before


def sample_steps(steps, marks=()):
    """Every step of a short phase; a long phase's ends, marks and an even sample."""
    if steps <= 6000:
        return range(steps)
    picked = set(range(2000)) | set(range(steps - 2000, steps))
    for m in marks:
        picked |= set(range(max(0, m - 50), min(steps, m + 50)))
    picked |= {steps * i // 2000 for i in range(2000)}
    return sorted(picked)


def replay(r, label, phase, got, max_shift, first_free=0, on_steps=False):
    """Compares an engine's learning rate at each step of a phase with kiln's (on the
    phase's clock: steps, or samples under a batch ramp; `on_steps` for an engine that runs
    the ramp's steps at the full batch, as its K-E001 says).

    A value `shift` steps off lies within kiln's values over [k - shift, k + shift]. Steps
    below `first_free` are reported, not failed (a declared K-E001 difference)."""
    lr, steps = phase["lr"], phase["steps"]
    clock = None if on_steps else phase_clock(phase)
    # want[j + 1] is kiln's value at step j, from one step before the phase (the warm-up's
    # zero) to one after its end.
    want = [kiln_lr(lr, k, steps, clock) for k in range(-1, steps + 1)]
    scale = max(abs(v) for v in want) or 1.0
    tol = 1e-9 * scale
    warmup = lr.get("warmup_steps", 0)
    worst, worst_at, exact, checked, free = 0, None, 0, 0, []
    for k in sample_steps(steps, marks=(warmup, steps - lr.get("decay_steps", 0))):
        x = got(k)
        shift = None
        for s in range(0, 6):
            window = want[max(0, k - s + 1) : min(steps, k + s) + 2]
            if min(window) - tol <= x <= max(window) + tol:
                shift = s
                break
        checked += 1
        if shift == 0:
            exact += 1
        if shift is None or shift > max_shift:
            if k < first_free:
                free.append(k)
                continue
            shift = 99 if shift is None else shift
        if shift > worst:
            worst, worst_at = shift, (k, x, want[k + 1])
    if free:
        r.note(
            f"{label}: steps {free} of the phase differ from kiln's schedule, as the "
            f"K-E001 diagnostic says"
        )
    if worst == 0:
        r.ok(f"{label}: the learning rate matches kiln's at all {checked} steps checked")
        return True, f"kiln's at all {checked} steps checked"
    elif worst <= max_shift:
        k, x, w = worst_at
        r.ok(
            f"{label}: the learning rate is within {worst} step(s) of kiln's at all "
            f"{checked} steps checked ({exact} exact; e.g. step {k}: {x:.6g} vs {w:.6g})"
        )
        return True, f"kiln's within {worst} step(s) at {checked} steps"
    else:
        k, x, w = worst_at
        r.fail(
            f"{label}: at step {k} of the phase the learning rate is {x!r}; kiln's schedule "
            f"says {w!r} (more than {max_shift} step(s) off)"
        )
        return False, f"step {k}: {x:.6g}, kiln {w:.6g}"


def step_named(plan, name):
    return next((s for s in plan["steps"] if s["name"] == name), None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_process_group():
    """A one-process gloo group, so the engines' distributed code runs on CPU."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    dist.init_process_group("gloo", rank=0, world_size=1)




# --------------------------------------------------------------------------------------
# Rows shared by the engines


def lr_rows(rt, phase, kind, end_step, fields=None):
    """The phase's schedule: its kind and last step, the values the engine holds as fields
    (fields: name -> engine value, compared where the plan has the same name), and the
    replay of every step (lr_replay_row), which covers peak, warm-up and final values."""
    lr = phase["lr"]
    rt.row("phase.lr.kind", lr["kind"], kind)
    names = {"peak": "peak", "warmup_steps": "warmup_steps", "final": "final_lr", "value": "value"}
    for name, value in (fields or {}).items():
        if names.get(name, name) in lr:
            rt.row(f"phase.lr.{name}", lr[names.get(name, name)], value)
    rt.row("phase.end_step", phase["start_step"] + phase["steps"], end_step)


def lr_replay_row(rt, result):
    good, text = result
    rt.row("phase.lr at every step", "kiln's schedule", "kiln's schedule" if good else text, text if good else "")


def optimizer_rows(rt, o, kind, beta1, beta2, eps, wd, clip):
    rt.row("optimizer.kind", o["kind"], kind)
    rt.row("optimizer.beta1", o["beta1"], beta1)
    rt.row("optimizer.beta2", o["beta2"], beta2)
    rt.row("optimizer.eps", o["eps"], eps)
    rt.row("optimizer.weight_decay", o["weight_decay"], wd)
    rt.row("optimizer.grad_clip", o["grad_clip"], clip)


def ramp_row(rt, sched, got=None):
    """The batch ramp's stages (samples from the run's start, sequences per step): the
    engine's own, or absent where it has none (K-E001)."""
    if not sched["batch_ramp"]:
        return
    want = [(s["from_samples"], s["global_batch"]) for s in sched["batch_ramp"]]
    rt.row("schedule.batch_ramp", want, ABSENT if got is None else got)


def layout_rows(rt, plan, got):
    topo, par, sched = plan["topology"], plan["experiment"]["parallel"], plan["schedule"]
    want = {
        "topology.tensor": topo["tensor"],
        "topology.pipeline": topo["pipeline"],
        "topology.virtual_stages": topo["virtual_stages"],
        "topology.stage_layers": topo["stage_layers"],
        "topology.context": topo["context"],
        "topology.data": topo["data"],
        "parallel.sequence_parallel": par["sequence_parallel"],
        "parallel.zero": par["zero"],
        "parallel.recompute": par["recompute"],
        "schedule.global_batch": sched["global_batch"],
        "schedule.micro_batch": sched["micro_batch"],
        "schedule.accumulation": sched["accumulation"],
        "schedule.seq_len": sched["seq_len"],
    }
    for field, value in want.items():
        rt.row(field, value, got.get(field, ABSENT))


# --------------------------------------------------------------------------------------
# DeepSpeed


def validate_deepspeed(directory, r, warnings):
    r.section(f"DeepSpeed: {directory}")
    plan = load_plan(directory)
    try:
        with quiet():
            import deepspeed
            import torch
            from deepspeed.runtime import lr_schedules
            from deepspeed.runtime.config import DeepSpeedConfig
    except Exception as e:  # noqa: BLE001 - print exactly why
        r.skip(f"cannot import deepspeed: {type(e).__name__}: {e}")
        return
    r.note(f"deepspeed {deepspeed.__version__}, torch {torch.__version__}")
    mirror_warnings(r, "deepspeed", warnings)
    topo, sched, exp = plan["topology"], plan["schedule"], plan["experiment"]
    # DeepSpeedConfig asks deepspeed.comm for the rank and the mpu for the data-parallel
    # size, so deepspeed.comm runs over a one-process gloo group. On a CPU DeepSpeed's comm
    # backend would first JIT-build its shared-memory all-reduce op (a C++ build that needs
    # ninja and a compiler); nothing here communicates, so that op is marked unavailable.
    import deepspeed.ops

    compatible = getattr(deepspeed.ops, "__compatible_ops__", {})
    if compatible.get("deepspeed_shm_comm"):
        compatible["deepspeed_shm_comm"] = False
        r.note("deepspeed_shm_comm (a CPU all-reduce op built on first use) is marked unavailable")
    try:
        with quiet():
            init_process_group()
            deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False, verbose=False)
    except Exception as e:  # noqa: BLE001
        r.skip(f"cannot start a one-process gloo group for DeepSpeed: {type(e).__name__}: {e}")
        return

    class DataParallelMpu:
        """What DeepSpeedConfig asks an mpu: the data-parallel size (the plan's)."""

        def get_data_parallel_world_size(self):
            return topo["data"]

        def get_data_parallel_rank(self):
            return 0

        def get_model_parallel_world_size(self):
            return topo["tensor"] * topo["pipeline"]

        def get_model_parallel_rank(self):
            return 0

    o = exp["optimizer"]
    kinds = {"WarmupCosineLR": "cosine", "WarmupDecayLR": "linear", "WarmupLR": "constant"}
    for phase in sched["phases"]:
        name = phase["name"]
        path = Path(directory) / f"ds_config_{name}.json"
        label = path.name
        if not path.exists():
            r.fail(f"{label} is missing")
            continue

        def no_duplicates(pairs):
            keys = [k for k, _ in pairs]
            if len(keys) != len(set(keys)):
                raise ValueError(f"duplicate keys in {label}: {keys}")
            return dict(pairs)

        try:
            raw = json.loads(path.read_text(), object_pairs_hook=no_duplicates)
        except ValueError as e:
            r.fail(f"{label} is not JSON: {e}")
            continue
        try:
            with quiet():
                cfg = DeepSpeedConfig(str(path), mpu=DataParallelMpu())
        except Exception as e:  # noqa: BLE001
            r.fail(f"{label}: DeepSpeedConfig rejects it: {type(e).__name__}: {e}")
            continue
        r.ok(f"{label}: DeepSpeedConfig accepts it (world size {cfg.world_size})")
        rt = RoundTrip(r, "deepspeed", f"deepspeed {exp['name']} {label}", warnings)
        model_rows(rt, exp["model"], {})
        precision = "fp16_mixed" if cfg.float16_config.enabled else "bf16_mixed" if cfg.bfloat16_config.enabled else "fp32"
        rt.row("precision", exp["precision"], precision)
        if exp["precision"] == "fp16_mixed":
            rt.row("fp16.loss_scale (0: dynamic)", 0, raw["fp16"].get("loss_scale"))
        optimizer_rows(
            rt,
            o,
            cfg.optimizer_name,
            cfg.optimizer_params["betas"][0],
            cfg.optimizer_params["betas"][1],
            cfg.optimizer_params["eps"],
            cfg.optimizer_params["weight_decay"],
            cfg.gradient_clipping,
        )
        ac = raw.get("activation_checkpointing")
        layout_rows(
            rt,
            plan,
            {
                "topology.tensor": 1,
                "topology.pipeline": 1,
                "topology.virtual_stages": 1,
                "topology.stage_layers": [exp["model"]["layers"]],
                "topology.context": 1,
                "topology.data": cfg.world_size,
                "parallel.sequence_parallel": False,
                "parallel.zero": int(cfg.zero_optimization_stage),
                "parallel.recompute": N("full" if ac else "none", "activation_checkpointing section" if ac else "no activation_checkpointing section"),
                "schedule.global_batch": cfg.train_batch_size,
                "schedule.micro_batch": cfg.train_micro_batch_size_per_gpu,
                "schedule.accumulation": cfg.gradient_accumulation_steps,
                "schedule.seq_len": N(sched["seq_len"], "the data loader's, not the config's"),
            },
        )
        p = cfg.scheduler_params or {}
        kind = kinds.get(cfg.scheduler_name, cfg.scheduler_name)
        if kind == "constant" and phase["lr"]["kind"] == "wsd":
            kind = "wsd (warm-up and stable part)"
        lr_rows(rt, phase, kind, p.get("total_num_steps", ABSENT))
        rt.row("phase.mix", phase["mix"], ABSENT)
        rt.row("tokenizer", exp["tokenizer"], ABSENT)
        rt.row("seed", exp["seed"], ABSENT)
        rt.row("schedule.checkpoint_every_steps", sched["checkpoint_every_steps"], ABSENT)
        rt.row("schedule.checkpoint_keep", sched["checkpoint_keep"], ABSENT)
        rt.row("schedule.eval_every_steps", sched["eval_every_steps"], ABSENT)
        rt.row("schedule.eval_tokens", sched["eval_tokens"], ABSENT)
        rt.row("wall_clock_breakdown (kiln times steps itself)", False, cfg.wall_clock_breakdown)
        # The scheduler, as DeepSpeed builds it from the JSON, replayed over the phase.
        try:
            cls = getattr(lr_schedules, cfg.scheduler_name)
            opt = torch.optim.AdamW(
                [torch.nn.Parameter(torch.zeros(1))],
                lr=cfg.optimizer_params["lr"],
                betas=tuple(cfg.optimizer_params["betas"]),
                eps=cfg.optimizer_params["eps"],
                weight_decay=cfg.optimizer_params["weight_decay"],
            )
            with quiet():
                scheduler = cls(opt, **cfg.scheduler_params)
        except Exception as e:  # noqa: BLE001
            r.fail(f"{label}: {cfg.scheduler_name}({cfg.scheduler_params}) fails: {e}")
            rt.finish()
            continue
        start = phase["start_step"]

        def lr_at(k):
            # DeepSpeed steps its scheduler after each optimizer step: the run's step t
            # runs at the scheduler's iteration t - 1.
            with quiet():
                scheduler.step(start + k - 1)
            return opt.param_groups[0]["lr"]

        first_free = 3 if cfg.scheduler_name == "WarmupDecayLR" and start < 3 else 0
        if phase["lr"]["kind"] == "wsd":
            r.note(f"{label}: DeepSpeed has no WSD scheduler (K-E001); its decay is not replayed")
            lr = phase["lr"]
            flat = dict(phase, lr={"kind": "constant", "value": lr["peak"], "warmup_steps": lr["warmup_steps"]})
            lr_replay_row(rt, replay(r, f"{label} {cfg.scheduler_name} (warm-up and stable part)", flat, lr_at, 2, on_steps=bool(sched["batch_ramp"])))
        else:
            lr_replay_row(rt, replay(r, f"{label} {cfg.scheduler_name}", phase, lr_at, 2, first_free, on_steps=bool(sched["batch_ramp"])))
        ramp_row(rt, sched)
        rt.finish()


# --------------------------------------------------------------------------------------
# torchtitan


def attr(obj, path, default=ABSENT):
    for name in path.split("."):
        if obj is None or not hasattr(obj, name):
            return default
        obj = getattr(obj, name)
    return obj


def init_std(linear):
    """The std of a torchtitan Linear.Config's weight initialiser (a functools.partial)."""
    init = (attr(linear, "param_init", None) or {}).get("weight")
    return getattr(init, "keywords", {}).get("std", ABSENT)


def validate_torchtitan(directory, r, warnings):
    r.section(f"torchtitan: {directory}")
    plan = load_plan(directory)
    try:
        with quiet():
            import torch
            import torchtitan
            import torchtitan.trainer  # noqa: F401
            from torchtitan.config import ConfigManager
            from torchtitan.distributed.activation_checkpoint import FullAC, SelectiveAC
            from torchtitan.distributed.parallel_dims import ParallelDims
            from torchtitan.hf_datasets.text_datasets import DATASETS
    except Exception as e:  # noqa: BLE001
        r.skip(f"cannot import torchtitan: {type(e).__name__}: {e}")
        return
    version = getattr(torchtitan, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("torchtitan")
    r.note(f"torchtitan {version}, torch {torch.__version__} (no placeholder classes)")
    mirror_warnings(r, "torchtitan", warnings)
    exp, topo, sched = plan["experiment"], plan["topology"], plan["schedule"]
    m = exp["model"]
    sys.path.insert(0, str(Path(directory).resolve()))
    for i, phase in enumerate(sched["phases"]):
        name = phase["name"]
        module = f"torchtitan_{name}"
        path = Path(directory) / f"{module}.py"
        if not path.exists():
            r.fail(f"{module}.py is missing")
            continue
        label = path.name
        function = f"{exp['name']}_{name}"
        try:
            loader = importlib.machinery.SourceFileLoader(module, str(path))
            spec = importlib.util.spec_from_loader(module, loader)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[module] = mod
            with quiet():
                loader.exec_module(mod)
                cfg = ConfigManager().parse_args(["--module", module, "--config", function])
        except ImportError as e:
            # A package the configuration needs at build time (torchao for float8).
            r.skip(f"{label}: cannot be loaded here: {type(e).__name__}: {e}")
            continue
        except BaseException as e:  # noqa: BLE001 - tyro exits with SystemExit
            r.fail(f"{label}: torchtitan's ConfigManager rejects it: {type(e).__name__}: {e}")
            continue
        r.ok(f"{label}: ConfigManager loads --module {module} --config {function} ({type(cfg).__qualname__})")
        rt = RoundTrip(r, "torchtitan", f"torchtitan {exp['name']} {label}", warnings)
        t, p = cfg.training, cfg.parallelism
        # The model's configuration (torchtitan's model args), then the model on the meta device.
        spec = cfg.model_spec
        mc = spec.model
        layer = mc.layers[0]
        attn = layer.attention
        ff = layer.feed_forward
        norm = layer.attention_norm
        heads = attn.n_heads
        rope = attr(attn, "rope", None)
        got = {
            "model.layers": len(mc.layers),
            "model.hidden": mc.dim,
            "model.ffn_hidden": ff.w1.out_features,
            "model.heads": heads,
            "model.kv_heads": attn.n_kv_heads or heads,
            "model.head_dim": attr(attn, "qkv_linear.head_dim", None) or attn.head_dim or mc.dim // heads,
            "model.vocab": mc.vocab_size,
            "model.seq_len": attr(rope, "max_seq_len"),
            "model.tied_embeddings": mc.enable_weight_tying,
            "model.activation": "swiglu" if attr(ff, "w3", None) is not None else type(ff).__qualname__,
            "model.norm": {"RMSNorm.Config": "rmsnorm", "LayerNorm.Config": "layernorm"}.get(type(norm).__qualname__, type(norm).__qualname__),
            "model.norm_eps": norm.eps,
            "model.position": "rope" if rope is not None else "none",
            "model.rope_base": attr(rope, "theta"),
            # apply_rotary_emb (torchtitan/models/llama3/model.py) rotates the whole head.
            "model.rotary_fraction": N(1.0, "the whole head") if rope is not None else None,
            "model.block": N("sequential", "TransformerBlock: attention, then the feed-forward layer"),
            "model.embedding_norm": N(False, "the embeddings go straight to the first layer"),
            "model.bias": bool(ff.w1.bias),
            "model.dropout": N(0.0, "torchtitan's models have no dropout"),
            "model.init_std": N(init_std(ff.w1), "feed_forward.w1's; output projections are depth-scaled"),
        }
        try:
            with quiet(), torch.device("meta"):
                model = mc.build()
            got["model.params"] = sum(x.numel() for x in model.parameters())
        except Exception as e:  # noqa: BLE001
            r.fail(f"{label}: building the model ({spec.name} {spec.flavor}) fails: {type(e).__name__}: {e}")
        model_rows(rt, m, got)
        want_dtype = {"bfloat16": "bf16_mixed", "float32": "fp32"}
        rt.row("precision", exp["precision"], want_dtype.get(t.mixed_precision_param, t.mixed_precision_param), f"training.mixed_precision_param {t.mixed_precision_param}")
        kwargs = cfg.optimizer.param_groups[0].optimizer_kwargs
        optimizer_rows(
            rt,
            exp["optimizer"],
            cfg.optimizer.param_groups[0].optimizer_name.lower(),
            kwargs["betas"][0],
            kwargs["betas"][1],
            kwargs["eps"],
            kwargs["weight_decay"],
            t.max_norm,
        )
        # The layout, as torchtitan's own ParallelDims reads it.
        pipelined = topo["pipeline"] > 1
        layout = {"schedule.global_batch": t.global_batch_size, "schedule.seq_len": t.seq_len}
        try:
            dims = ParallelDims.from_config(p, topo["world"])
        except Exception as e:  # noqa: BLE001
            r.fail(f"{label}: ParallelDims rejects the layout for {topo['world']} GPUs: {e}")
        else:
            dp = dims.dp_replicate * dims.dp_shard
            reshard = p.fsdp_reshard_after_forward
            zero = 0 if dims.dp_shard == 1 else {"never": 2}.get(reshard, 3)
            parts = p.module_fqns_per_model_part
            if parts is None:
                stage_layers, virtual = ([m["layers"]] if dims.pp == 1 else ABSENT), 1
            else:
                per_part = [sum(1 for x in part if x.startswith("layers.")) for part in parts]
                virtual = len(parts) // dims.pp
                # Part j runs on stage j mod pp (torchtitan's loop-style interleaving).
                stage_layers = [sum(per_part[s::dims.pp]) for s in range(dims.pp)]
                flat = [x for part in parts for x in part]
                want_flat = ["tok_embeddings"] + [f"layers.{j}" for j in range(m["layers"])] + ["norm", "lm_head"]
                r.check(f"{label} modules of the model parts, in order", flat, want_flat)
            local = t.local_batch_size
            micro = p.pipeline_parallel_microbatch_size if pipelined else local
            accumulation = local // micro if pipelined else t.global_batch_size // (local * dp)
            ac = cfg.activation_checkpoint
            recompute = "none" if ac is None else "selective_op" if isinstance(ac, SelectiveAC.Config) else "full" if isinstance(ac, FullAC.Config) else type(ac).__qualname__
            layout.update(
                {
                    "topology.tensor": dims.tp,
                    "topology.pipeline": dims.pp,
                    "topology.virtual_stages": virtual,
                    "topology.stage_layers": stage_layers,
                    "topology.context": dims.cp,
                    "topology.data": N(dp, f"replicate {dims.dp_replicate} × shard {dims.dp_shard}"),
                    "parallel.sequence_parallel": p.enable_sequence_parallel and dims.tp > 1,
                    "parallel.zero": N(zero, f"shard {dims.dp_shard}, fsdp_reshard_after_forward {reshard}"),
                    "parallel.recompute": N(recompute, f"activation_checkpoint {type(ac).__qualname__ if ac else None}"),
                    "schedule.micro_batch": micro,
                    "schedule.accumulation": N(accumulation, "pipeline micro-batches" if pipelined else "gradient accumulation"),
                }
            )
        layout_rows(rt, plan, layout)
        # The schedule, data, tokenizer, checkpoints, evaluation and seed.
        lr = cfg.lr_scheduler
        if lr.decay_ratio == 0 or lr.min_lr_factor == 1:
            kind = N("constant", f"decay_ratio {lr.decay_ratio}, min_lr_factor {lr.min_lr_factor}: no decay")
        else:
            kind = "wsd" if lr.decay_ratio else lr.decay_type
        lr_rows(rt, phase, kind, t.steps)
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=kwargs["lr"])
        with quiet():
            schedulers = lr.build(optimizers=[opt], training_steps=t.steps)
        factor = schedulers.schedulers[0].lr_lambdas[0]
        start = phase["start_step"]
        later_warmup = start > 0 and phase["lr"].get("warmup_steps", 0) > 1
        lr_replay_row(
            rt,
            replay(
                r,
                f"{label} LRSchedulersContainer",
                phase,
                lambda k: kwargs["lr"] * factor(start + k),
                1,
                first_free=phase["lr"].get("warmup_steps", 0) if later_warmup else 0,
                on_steps=bool(sched["batch_ramp"]),
            ),
        )
        ramp_row(rt, sched)
        sources = {f"{exp['name']}.{s['name']}": s for s in exp["sources"]}
        got_mix = {s.dataset: s.weight for s in cfg.dataloader.sources}
        rt.row("phase.mix", {f"{exp['name']}.{k}": w for k, w in phase["mix"].items()}, got_mix)
        rt.row(
            "sources (path, text field)",
            {k: (s["path"], s["text_field"]) for k, s in sources.items() if k in got_mix},
            {
                k: (DATASETS[k].path, "text" if DATASETS[k].sample_processor({"text": "x"}) == "x" else "?")
                if k in DATASETS
                else ABSENT
                for k in got_mix
            },
        )
        rt.row("tokenizer.path", step_named(plan, "train_tokenizer")["outputs"][0], cfg.hf_assets_path)
        c = cfg.checkpoint
        train = step_named(plan, f"train.{name}")
        rt.row("checkpoint.dir", train["outputs"][0], cfg.dump_folder, f"checkpoints in {cfg.dump_folder}/{c.folder}, enable={c.enable}")
        rt.row("schedule.checkpoint_every_steps", sched["checkpoint_every_steps"], c.interval)
        rt.row("schedule.checkpoint_keep", sched["checkpoint_keep"], c.keep_latest_k)
        if i > 0:
            prev = sched["phases"][i - 1]
            prev_step = step_named(plan, f"train.{prev['name']}")
            want = os.path.abspath(f"{prev_step['outputs'][0]}/checkpoint/step-{prev['start_step'] + prev['steps']}")
            rt.row("checkpoint.load (the previous phase's last)", want, c.initial_load_path)
        v = cfg.validator
        rt.row("schedule.eval_every_steps", sched["eval_every_steps"], v.freq if v.enable else N(ABSENT, f"validator off, freq {v.freq}"))
        rt.row("schedule.eval_tokens", sched["eval_tokens"], v.steps * t.global_batch_size * t.seq_len if v.enable else ABSENT)
        rt.row("seed", exp["seed"], cfg.debug.seed, f"dataloader seed {getattr(cfg.dataloader, 'seed', None)}")
        rt.finish()
    sys.path.remove(str(Path(directory).resolve()))


# --------------------------------------------------------------------------------------
# Megatron-LM

# Megatron-LM's argument parser (megatron/training/arguments.py) for the flags kiln emits,
# transcribed from NVIDIA/Megatron-LM at commit 000c4ac24f61159c138b0975def722c65245983c
# (the tree that goes with megatron-core 0.16): flag -> (dest, action, type, choices, nargs).
# Used only when megatron.training cannot be imported (megatron-core 0.19 ships it).
MEGATRON_LM_FLAGS = {
    "--tensor-model-parallel-size": ("tensor_model_parallel_size", None, int, None, None),
    "--pipeline-model-parallel-size": ("pipeline_model_parallel_size", None, int, None, None),
    "--context-parallel-size": ("context_parallel_size", None, int, None, None),
    "--sequence-parallel": ("sequence_parallel", "store_true", None, None, None),
    "--decoder-first-pipeline-num-layers": ("decoder_first_pipeline_num_layers", None, int, None, None),
    "--decoder-last-pipeline-num-layers": ("decoder_last_pipeline_num_layers", None, int, None, None),
    "--num-layers-per-virtual-pipeline-stage": ("num_layers_per_virtual_pipeline_stage", None, int, None, None),
    "--num-virtual-stages-per-pipeline-rank": ("num_virtual_stages_per_pipeline_rank", None, int, None, None),
    "--use-distributed-optimizer": ("use_distributed_optimizer", "store_true", None, None, None),
    "--num-layers": ("num_layers", None, int, None, None),
    "--hidden-size": ("hidden_size", None, int, None, None),
    "--ffn-hidden-size": ("ffn_hidden_size", None, int, None, None),
    "--num-attention-heads": ("num_attention_heads", None, int, None, None),
    "--group-query-attention": ("group_query_attention", "store_true", None, None, None),
    "--num-query-groups": ("num_query_groups", None, int, None, None),
    "--kv-channels": ("kv_channels", None, int, None, None),
    "--seq-length": ("seq_length", None, int, None, None),
    "--max-position-embeddings": ("max_position_embeddings", None, int, None, None),
    "--swiglu": ("swiglu", "store_true", None, None, None),
    "--normalization": ("normalization", None, str, ["LayerNorm", "RMSNorm"], None),
    "--position-embedding-type": (
        "position_embedding_type",
        None,
        str,
        ["learned_absolute", "rope", "mrope", "relative", "none"],
        None,
    ),
    "--untie-embeddings-and-output-weights": ("untie_embeddings_and_output_weights", "store_true", None, None, None),
    "--disable-bias-linear": ("add_bias_linear", "store_false", None, None, None),
    "--attention-dropout": ("attention_dropout", None, float, None, None),
    "--hidden-dropout": ("hidden_dropout", None, float, None, None),
    "--attention-backend": ("attention_backend", None, str, ["flash", "fused", "unfused", "local", "auto"], None),
    "--make-vocab-size-divisible-by": ("make_vocab_size_divisible_by", None, int, None, None),
    "--norm-epsilon": ("layernorm_epsilon", None, float, None, None),
    "--init-method-std": ("init_method_std", None, float, None, None),
    "--rotary-base": ("rotary_base", None, int, None, None),
    "--rotary-percent": ("rotary_percent", None, float, None, None),
    "--tokenizer-type": (
        "tokenizer_type",
        None,
        str,
        [
            "BertWordPieceLowerCase",
            "BertWordPieceCase",
            "GPT2BPETokenizer",
            "SentencePieceTokenizer",
            "GPTSentencePieceTokenizer",
            "HuggingFaceTokenizer",
            "Llama2Tokenizer",
            "TikTokenizer",
            "MultimodalTokenizer",
            "NullTokenizer",
            "NullMultimodalTokenizer",
            "SFTTokenizer",
        ],
        None,
    ),
    "--tokenizer-model": ("tokenizer_model", None, str, None, None),
    "--vocab-size": ("vocab_size", None, int, None, None),
    "--bf16": ("bf16", "store_true", None, None, None),
    "--fp16": ("fp16", "store_true", None, None, None),
    "--fp8-format": ("fp8", None, str, ["e4m3", "hybrid"], None),
    "--recompute-granularity": ("recompute_granularity", None, str, ["full", "selective"], None),
    "--recompute-method": ("recompute_method", None, str, ["uniform", "block"], None),
    "--recompute-num-layers": ("recompute_num_layers", None, int, None, None),
    "--cpu-offloading-num-layers": ("cpu_offloading_num_layers", None, int, None, None),
    "--optimizer": ("optimizer", None, str, ["adam", "sgd", "muon", "dist_muon"], None),
    "--adam-beta1": ("adam_beta1", None, float, None, None),
    "--adam-beta2": ("adam_beta2", None, float, None, None),
    "--adam-eps": ("adam_eps", None, float, None, None),
    "--weight-decay": ("weight_decay", None, float, None, None),
    "--clip-grad": ("clip_grad", None, float, None, None),
    "--micro-batch-size": ("micro_batch_size", None, int, None, None),
    "--global-batch-size": ("global_batch_size", None, int, None, None),
    "--train-iters": ("train_iters", None, int, None, None),
    "--lr": ("lr", None, float, None, None),
    "--min-lr": ("min_lr", None, float, None, None),
    "--lr-decay-style": ("lr_decay_style", None, str, ["constant", "linear", "cosine", "inverse-square-root", "WSD"], None),
    "--lr-wsd-decay-style": ("lr_wsd_decay_style", None, str, ["exponential", "linear", "cosine", "minus_sqrt"], None),
    "--lr-wsd-decay-iters": ("lr_wsd_decay_iters", None, int, None, None),
    "--lr-warmup-iters": ("lr_warmup_iters", None, int, None, None),
    "--lr-warmup-init": ("lr_warmup_init", None, float, None, None),
    "--lr-decay-iters": ("lr_decay_iters", None, int, None, None),
    "--override-opt-param-scheduler": ("override_opt_param_scheduler", "store_true", None, None, None),
    "--seed": ("seed", None, int, None, None),
    "--data-path": ("data_path", None, None, None, "*"),
    "--split": ("split", None, str, None, None),
    "--eval-interval": ("eval_interval", None, int, None, None),
    "--eval-iters": ("eval_iters", None, int, None, None),
    "--save-interval": ("save_interval", None, int, None, None),
    "--save": ("save", None, str, None, None),
    "--load": ("load", None, str, None, None),
}

# Megatron-LM's defaults for the flags above that kiln may leave out.
MEGATRON_LM_DEFAULTS = {
    "tensor_model_parallel_size": 1,
    "pipeline_model_parallel_size": 1,
    "context_parallel_size": 1,
    "sequence_parallel": False,
    "use_distributed_optimizer": False,
    "group_query_attention": False,
    "num_query_groups": 1,
    "swiglu": False,
    "normalization": "LayerNorm",
    "position_embedding_type": "learned_absolute",
    "untie_embeddings_and_output_weights": False,
    "add_bias_linear": True,
    "attention_dropout": 0.1,
    "hidden_dropout": 0.1,
    "attention_backend": "auto",
    "make_vocab_size_divisible_by": 128,
    "layernorm_epsilon": 1e-05,
    "init_method_std": 0.02,
    "rotary_base": 10000,
    "rotary_percent": 1.0,
    "bf16": False,
    "fp16": False,
    "fp8": None,
    "recompute_granularity": None,
    "recompute_method": None,
    "recompute_num_layers": None,
    "cpu_offloading_num_layers": 0,
    "lr_warmup_iters": 0,
    "lr_warmup_init": 0.0,
    "min_lr": 0.0,
    "lr_decay_style": "linear",
    "lr_wsd_decay_style": "exponential",
    "lr_wsd_decay_iters": None,
    "override_opt_param_scheduler": False,
    "weight_decay": 0.01,
    "clip_grad": 1.0,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_eps": 1e-08,
    "seed": 1234,
    "eval_interval": 1000,
    "eval_iters": 100,
    "num_layers_per_virtual_pipeline_stage": None,
    "num_virtual_stages_per_pipeline_rank": None,
    "decoder_first_pipeline_num_layers": None,
    "decoder_last_pipeline_num_layers": None,
}


def megatron_parser(r):
    """Megatron-LM's own parser if it is installed, else the transcription."""
    try:
        with quiet():
            from megatron.training.arguments import add_megatron_arguments
        parser = argparse.ArgumentParser(allow_abbrev=False)
        add_megatron_arguments(parser)
        r.note("flags checked with Megatron-LM's argument parser (megatron.training.arguments)")
        return parser, True
    except Exception as e:  # noqa: BLE001
        r.note(
            "Megatron-LM's argument parser cannot be imported here "
            f"({type(e).__name__}: {e}): megatron.training is not installed. Flags are checked against the transcription of that parser in "
            "MEGATRON_LM_FLAGS (NVIDIA/Megatron-LM 000c4ac); the model, parallel layout and "
            "schedule are checked with megatron-core itself."
        )
    parser = argparse.ArgumentParser(allow_abbrev=False, exit_on_error=False)
    for flag, (dest, action, type_, choices, nargs) in MEGATRON_LM_FLAGS.items():
        kw = {"dest": dest}
        if action:
            kw["action"] = action
        else:
            if type_:
                kw["type"] = type_
            if choices:
                kw["choices"] = choices
            if nargs:
                kw["nargs"] = nargs
        parser.add_argument(flag, **kw)
    parser.set_defaults(**MEGATRON_LM_DEFAULTS)
    return parser, False


def parse_script(path):
    """The script's argument list (with $SAVE and $LOAD resolved), its environment exports
    and the torchrun options."""
    text = path.read_text()
    assigned = {}
    for line in text.splitlines():
        mm = re.match(r"\s*(SAVE|LOAD)=(.*)$", line)
        if mm and mm.group(1) not in assigned:
            value = shlex.split(mm.group(2))[0]
            if value not in ("$SAVE",):
                assigned[mm.group(1)] = value
    assigned.setdefault("LOAD", assigned.get("SAVE"))
    block = re.search(r"^args=\($(.*?)^\)$", text, re.S | re.M)
    words = shlex.split(block.group(1), comments=True) if block else []
    words = [assigned.get(w[1:], w) if w in ("$SAVE", "$LOAD") else w for w in words]
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", text, re.M))
    runner = re.search(r"^exec torchrun(.*?)\"\$\{args\[@\]\}\"", text, re.S | re.M)
    torchrun = shlex.split(runner.group(1).replace("\\\n", " ")) if runner else []
    return words, exports, torchrun, assigned




# The GPU architecture (compute capability major) of the plan's GPU, which Megatron-LM's
# validate_args asks torch.cuda for; there is no GPU here.
GPU_ARCH = {"a100": 8, "h100": 9, "h200": 9, "gh200": 9, "b200": 10, "gb200": 10}


def validate_megatron(directory, r, warnings):
    r.section(f"Megatron-LM: {directory}")
    plan = load_plan(directory)
    try:
        with quiet():
            import torch
            import torch.nn.functional as F
            import megatron.core
            from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
            from megatron.core.transformer import TransformerConfig
            from megatron.core.transformer.enums import AttnBackend
    except Exception as e:  # noqa: BLE001
        r.skip(f"cannot import megatron.core: {type(e).__name__}: {e}")
        return
    r.note(f"megatron-core {megatron.core.__version__}, torch {torch.__version__}")
    mirror_warnings(r, "megatron", warnings)
    parser, real = megatron_parser(r)
    exp, topo, sched = plan["experiment"], plan["topology"], plan["schedule"]
    m, par = exp["model"], exp["parallel"]
    previous_scheduler_state = None
    for i, phase in enumerate(sched["phases"]):
        name = phase["name"]
        path = Path(directory) / f"pretrain_{name}.sh"
        label = path.name
        if not path.exists():
            r.fail(f"{label} is missing")
            continue
        words, exports, torchrun, assigned = parse_script(path)
        def refuse(message):
            raise argparse.ArgumentError(None, message)

        parser.error = refuse
        args = None
        for _ in range(len(words)):
            try:
                with quiet():
                    if real:
                        args = parser.parse_args(words)
                    else:
                        args, unknown = parser.parse_known_args(words)
                        if unknown:
                            raise argparse.ArgumentError(None, f"unrecognized arguments: {' '.join(unknown)}")
                break
            except (argparse.ArgumentError, SystemExit) as e:
                # A known emission bug (EMISSION_TODO) is recorded and the flag's value
                # corrected, so that the rest of the round trip is still checked.
                bad = re.search(r"argument (--[\w-]+): invalid int value: '(-?\d+)\.0'", str(e))
                todo = bad and EMISSION_TODO.get(("megatron", bad.group(1)))
                if not todo:
                    r.fail(f"{label}: Megatron-LM's argument parser rejects the arguments: {e}")
                    break
                r.todo.append(("megatron", label, bad.group(1), "an integer", f"{bad.group(2)}.0", f"the parser refuses it: {e} (TODO emission: {todo})"))
                print(f"  TODO  {label}: Megatron-LM's parser refuses {bad.group(1)} {bad.group(2)}.0 ({todo}); checked as {bad.group(2)}")
                at = words.index(bad.group(1)) + 1
                words[at] = bad.group(2)
        if args is None:
            continue
        flags = [w for w in words if w.startswith("--")]
        r.ok(f"{label}: the parser accepts all {len(flags)} flags")
        run = dict(zip(torchrun[::2], torchrun[1::2]))
        r.checks(
            f"{label} torchrun",
            [
                ("--nnodes", int(run.get("--nnodes", 0)), topo["nodes"]),
                ("--nproc-per-node", int(run.get("--nproc-per-node", 0)), topo["gpus_per_node"]),
            ],
        )
        if topo["tensor"] > 1 or topo["context"] > 1:
            r.check(f"{label} CUDA_DEVICE_MAX_CONNECTIONS (Megatron-LM asserts it with TP/CP)", exports.get("CUDA_DEVICE_MAX_CONNECTIONS"), "1")
        world = topo["world"]
        config = None
        if real:
            # Megatron-LM's own validate_args and core_transformer_config_from_args, for the
            # plan's world size, with the plan's GPU architecture standing in for torch.cuda.
            import megatron.training.arguments as margs
            from megatron.training.argument_utils import core_transformer_config_from_args

            arch = next((v for k, v in GPU_ARCH.items() if exp["gpu"].startswith(k)), 9)
            margs.get_device_arch_version = lambda: arch
            args.rank, args.world_size = 0, world
            # A batch ramp gives --step-batch-size-schedule instead of --global-batch-size.
            args._is_global_batch_size_explicitly_specified = args.step_batch_size_schedule is None
            saved = {k: os.environ.get(k) for k in exports}
            os.environ.update(exports)  # the script's exports, which validate_args reads
            try:
                with quiet():
                    margs.validate_args(args, {})
            except BaseException as e:  # noqa: BLE001 - asserts
                r.fail(f"{label}: Megatron-LM's validate_args stops: {type(e).__name__}: {e}")
                continue
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            r.ok(f"{label}: Megatron-LM's validate_args accepts it for {world} GPUs (data-parallel size {args.data_parallel_size})")
            # Kernel choices that need Transformer Engine (not installed here; no value of
            # the plan depends on them) are turned off, as Megatron-LM itself does without TE.
            fused_off = [k for k in ("apply_rope_fusion",) if getattr(args, k, False)]
            for k in fused_off:
                setattr(args, k, False)
            try:
                with quiet():
                    config = core_transformer_config_from_args(args)
            except Exception as e:  # noqa: BLE001
                r.fail(f"{label}: core_transformer_config_from_args fails: {type(e).__name__}: {e}")
                continue
            r.ok(
                f"{label}: core_transformer_config_from_args builds megatron-core's {type(config).__name__}"
                + (f" ({', '.join(fused_off)} off: Transformer Engine is not installed here)" if fused_off else "")
            )
            dp = args.data_parallel_size
            vpp = args.virtual_pipeline_model_parallel_size
        else:
            dp = world // (args.tensor_model_parallel_size * args.pipeline_model_parallel_size * args.context_parallel_size)
            vpp = None
            if args.num_layers_per_virtual_pipeline_stage is not None:
                vpp = args.num_layers // args.pipeline_model_parallel_size // args.num_layers_per_virtual_pipeline_stage
            elif args.num_virtual_stages_per_pipeline_rank is not None:
                vpp = args.num_virtual_stages_per_pipeline_rank
        # TransformerConfig as Megatron-LM builds it (the transcription's path builds it here).
        dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32
        kw = dict(
            num_layers=args.num_layers,
            hidden_size=args.hidden_size,
            ffn_hidden_size=args.ffn_hidden_size,
            num_attention_heads=args.num_attention_heads,
            kv_channels=args.kv_channels,
            num_query_groups=args.num_query_groups if args.group_query_attention else None,
            tensor_model_parallel_size=args.tensor_model_parallel_size,
            pipeline_model_parallel_size=args.pipeline_model_parallel_size,
            virtual_pipeline_model_parallel_size=vpp,
            context_parallel_size=args.context_parallel_size,
            sequence_parallel=args.sequence_parallel and args.tensor_model_parallel_size > 1,
            num_layers_in_first_pipeline_stage=args.decoder_first_pipeline_num_layers,
            num_layers_in_last_pipeline_stage=args.decoder_last_pipeline_num_layers,
            normalization=args.normalization,
            layernorm_epsilon=args.layernorm_epsilon,
            init_method_std=args.init_method_std,
            add_bias_linear=args.add_bias_linear,
            add_qkv_bias=args.add_bias_linear,
            hidden_dropout=args.hidden_dropout,
            attention_dropout=args.attention_dropout,
            bf16=args.bf16,
            fp16=args.fp16,
            params_dtype=dtype,
            pipeline_dtype=dtype,
            fp8=args.fp8,
            recompute_granularity=args.recompute_granularity,
            recompute_method=args.recompute_method,
            recompute_num_layers=args.recompute_num_layers,
            cpu_offloading=args.cpu_offloading_num_layers > 0,
            cpu_offloading_num_layers=args.cpu_offloading_num_layers,
            attention_backend=args.attention_backend if isinstance(args.attention_backend, AttnBackend) else AttnBackend[args.attention_backend],
            variable_seq_lengths=False,
            deallocate_pipeline_outputs=True,
        )
        if args.swiglu:
            kw.update(gated_linear_unit=True, activation_func=F.silu)
        if config is None:
            try:
                with quiet():
                    config = TransformerConfig(**kw)
            except Exception as e:  # noqa: BLE001
                r.fail(f"{label}: megatron-core's TransformerConfig rejects it: {type(e).__name__}: {e}")
                continue
            r.ok(f"{label}: megatron-core's TransformerConfig accepts the model and parallel layout")
        # The vocabulary as Megatron-LM pads it (megatron/training/vocab_utils.py).
        if args.tokenizer_type == "NullTokenizer":
            tokens = args.vocab_size + 1
        else:
            tokens = exp["tokenizer"]["vocab"]
        multiple = args.make_vocab_size_divisible_by * args.tensor_model_parallel_size
        try:
            from megatron.training.vocab_utils import calculate_padded_vocab_size

            with quiet():
                padded = calculate_padded_vocab_size(tokens, args.make_vocab_size_divisible_by, args.tensor_model_parallel_size)
        except ImportError:
            padded = -(-tokens // multiple) * multiple
        rt = RoundTrip(r, "megatron", f"megatron {exp['name']} {label}", warnings)
        gated = bool(config.gated_linear_unit)
        act = getattr(config.activation_func, "__name__", str(config.activation_func))
        got = {
            "model.layers": config.num_layers,
            "model.hidden": config.hidden_size,
            "model.ffn_hidden": config.ffn_hidden_size,
            "model.heads": config.num_attention_heads,
            "model.kv_heads": config.num_query_groups or config.num_attention_heads,
            "model.head_dim": config.kv_channels,
            "model.vocab": N(padded, f"{tokens} tokens padded to a multiple of {args.make_vocab_size_divisible_by} × TP {args.tensor_model_parallel_size}"),
            "model.seq_len": N(args.seq_length, f"max position embeddings {args.max_position_embeddings}"),
            "model.tied_embeddings": not args.untie_embeddings_and_output_weights,
            "model.activation": "swiglu" if gated and act == "silu" else "gelu" if not gated and act == "gelu" else f"{'gated ' if gated else ''}{act}",
            "model.norm": {"LayerNorm": "layernorm", "RMSNorm": "rmsnorm"}.get(config.normalization, config.normalization),
            "model.norm_eps": config.layernorm_epsilon,
            "model.position": {"rope": "rope", "learned_absolute": "learned"}.get(args.position_embedding_type, args.position_embedding_type),
            "model.rope_base": args.rotary_base if args.position_embedding_type == "rope" else None,
            "model.rotary_fraction": args.rotary_percent if args.position_embedding_type == "rope" else None,
            "model.block": N("sequential", "megatron-core's TransformerLayer: attention, then the MLP"),
            "model.embedding_norm": N(False, "megatron-core's GPTModel has no embedding norm"),
            "model.bias": config.add_bias_linear,
            "model.dropout": N(config.hidden_dropout, f"attention dropout {config.attention_dropout}") if config.hidden_dropout == config.attention_dropout else (config.hidden_dropout, config.attention_dropout),
            "model.init_std": config.init_method_std,
        }
        count = count_megatron_parameters(r, label, args, kw, padded)
        if count is not None:
            got["model.params"] = N(count, f"with {padded - m['vocab']} padding rows" if padded != m["vocab"] else "")
        model_rows(rt, m, got)
        precision = "fp8_mixed" if config.fp8 else "bf16_mixed" if config.bf16 else "fp16_mixed" if config.fp16 else "fp32"
        rt.row("precision", exp["precision"], precision)
        o = exp["optimizer"]
        optimizer_rows(rt, o, "adamw" if args.optimizer == "adam" else args.optimizer, args.adam_beta1, args.adam_beta2, args.adam_eps, args.weight_decay, args.clip_grad)
        stages = topo["stage_layers"]
        pp = config.pipeline_model_parallel_size
        first, last = config.num_layers_in_first_pipeline_stage, config.num_layers_in_last_pipeline_stage
        if first is None and last is None:
            stage_layers = [config.num_layers // pp] * pp
        else:
            first = first if first is not None else (config.num_layers - (last or 0)) // (pp - (last is not None))
            middle = config.num_layers - first - (last or 0)
            inner = pp - 1 - (last is not None)
            rest = [middle // inner] * inner if inner else []
            stage_layers = [first] + rest + ([last] if last is not None else [])
        granularity = config.recompute_granularity
        if granularity is None:
            recompute = N("none", "")
        elif granularity == "full":
            per_stage = max(stages) // (vpp or 1)
            whole = (config.recompute_method == "uniform" and config.recompute_num_layers == 1) or (
                config.recompute_method == "block" and config.recompute_num_layers >= per_stage
            )
            recompute = N("full" if whole else "full (partial)", f"--recompute-method {config.recompute_method} --recompute-num-layers {config.recompute_num_layers}")
        else:
            recompute = N(granularity, "--recompute-granularity selective")
        micro = args.micro_batch_size
        # Under a batch ramp: Megatron-LM's own StepBatchsizeNumMicroBatchesCalculator for the
        # schedule, stepped as update_train_iters steps it (megatron/training/training.py:
        # the batch for the samples consumed so far, until --train-samples): the global batch
        # of every iteration, the iterations, and the samples before each.
        ramp = getattr(args, "step_batch_size_schedule", None)
        consumed_before = None
        if ramp:
            from megatron.core.num_microbatches_calculator import StepBatchsizeNumMicroBatchesCalculator

            try:
                with quiet():
                    calc = StepBatchsizeNumMicroBatchesCalculator(
                        micro_batch_size=micro,
                        data_parallel_size=dp,
                        decrease_batch_size_if_needed=False,
                        rank=0,
                        schedule=ramp,
                        seq_length=args.seq_length,
                    )
                consumed_before, batches, consumed = [], [], 0
                while consumed < args.train_samples:
                    # consistency_check: the batch splits into micro-batches × data-parallel
                    # ranks (Megatron-LM asserts it at the iteration the batch changes).
                    calc.update(consumed, consistency_check=True)
                    consumed_before.append(consumed)
                    batches.append(calc.get_current_global_batch_size())
                    consumed += batches[-1]
                consumed_before.append(consumed)
            except Exception as e:  # noqa: BLE001 - asserts
                r.fail(f"{label}: Megatron-LM's step batch-size schedule fails: {type(e).__name__}: {e}")
                continue
            r.ok(f"{label}: StepBatchsizeNumMicroBatchesCalculator runs {len(batches)} iterations to --train-samples {args.train_samples}")
            full_batch = calc.global_batch_size
            train_iters = len(batches)
            segments = []
            for k in range(phase["start_step"], min(train_iters, phase["start_step"] + phase["steps"])):
                if not segments or segments[-1][1] != batches[k]:
                    segments.append((k, batches[k]))
            rt.row(
                "phase.batch (first step, sequences)",
                [(b["first_step"], b["global_batch"]) for b in phase["batch"]],
                N(segments, "--step-batch-size-schedule, each iteration's batch"),
            )
            ramp_row(rt, sched, N(calc.schedule, f"thresholds of {args.seq_length}-token sequences"))
        else:
            full_batch = args.global_batch_size
            train_iters = args.train_iters
        layout_rows(
            rt,
            plan,
            {
                "topology.tensor": config.tensor_model_parallel_size,
                "topology.pipeline": pp,
                "topology.virtual_stages": vpp or 1,
                "topology.stage_layers": stage_layers,
                "topology.context": config.context_parallel_size,
                "topology.data": dp,
                "parallel.sequence_parallel": config.sequence_parallel,
                "parallel.zero": N(1 if args.use_distributed_optimizer else 0, "--use-distributed-optimizer" if args.use_distributed_optimizer else ""),
                "parallel.recompute": recompute,
                "schedule.global_batch": full_batch,
                "schedule.micro_batch": micro,
                "schedule.accumulation": full_batch // (micro * dp),
                "schedule.seq_len": args.seq_length,
            },
        )
        end = phase["start_step"] + phase["steps"]
        styles = {"cosine": "cosine", "linear": "linear", "constant": "constant", "WSD": "wsd"}
        lr = phase["lr"]
        fields = {}
        if lr["kind"] in ("cosine", "wsd"):
            warmup = args.lr_warmup_iters
            if consumed_before is not None:
                # The iterations whose samples reach --lr-warmup-samples.
                warmup = N(
                    next(k for k, c in enumerate(consumed_before) if c >= args.lr_warmup_samples),
                    f"--lr-warmup-samples {args.lr_warmup_samples}",
                )
            fields = {"peak": args.lr, "warmup_steps": warmup}
            if lr["kind"] == "cosine":
                fields["final"] = args.min_lr
        style = styles.get(args.lr_decay_style, args.lr_decay_style)
        if args.lr == args.min_lr and style in ("linear", "cosine"):
            style = N("constant", f"--lr-decay-style {args.lr_decay_style} from --lr to an equal --min-lr")
        lr_rows(rt, phase, style, train_iters, fields)
        data = args.data_path or []
        rt.row(
            "phase.mix",
            {f"{step_named(plan, f'encode.{s}')['outputs'][0]}/text_document": w for s, w in phase["mix"].items()},
            dict(zip(data[1::2], (float(x) for x in data[0::2]))),
            "--data-path weight/prefix pairs over the encode steps' outputs",
        )
        split = [float(x) for x in re.findall(r"[.0-9]+", args.split or "")]
        if len(split) != 3 or sum(split) <= 0 or split[1] <= 0:
            r.fail(f"{label}: --split {args.split!r} gives no validation data")
        rt.row("tokenizer.path", step_named(plan, "train_tokenizer")["outputs"][0], args.tokenizer_model, f"--tokenizer-type {args.tokenizer_type}")
        rt.row("tokenizer.vocab", exp["tokenizer"]["vocab"], tokens if args.tokenizer_type == "NullTokenizer" else N(exp["tokenizer"]["vocab"], "the trained tokenizer's"))
        train = step_named(plan, f"train.{name}")
        rt.row("checkpoint.dir", train["outputs"][0], args.save, "--save")
        if i > 0:
            prev = step_named(plan, f"train.{sched['phases'][i - 1]['name']}")
            rt.row("checkpoint.load (a first run: the previous phase's)", prev["outputs"][0], assigned.get("LOAD"), "--load")
        rt.row("schedule.checkpoint_every_steps", sched["checkpoint_every_steps"], args.save_interval)
        rt.row("schedule.checkpoint_keep", sched["checkpoint_keep"], N(ABSENT, "Megatron-LM keeps every checkpoint"))
        rt.row("schedule.eval_every_steps", sched["eval_every_steps"], args.eval_interval)
        eval_batch = getattr(args, "eval_global_batch_size", None) or args.global_batch_size
        rt.row("schedule.eval_tokens", sched["eval_tokens"], N(args.eval_iters * eval_batch * args.seq_length, f"--eval-iters {args.eval_iters} × eval global batch × seq len"))
        rt.row("seed", exp["seed"], args.seed)
        # The learning rate, as Megatron-LM's OptimizerParamScheduler computes it.
        gbs = args.global_batch_size

        class Optimizer:
            param_groups = [{}]

        # Sample-based (a ramp): the scheduler counts samples, as Megatron-LM's
        # get_optimizer_param_scheduler sets it from --lr-*-samples.
        if consumed_before is not None:
            warmup_n, decay_n = args.lr_warmup_samples, args.lr_decay_samples or args.train_samples
            incr_n = args.train_samples
            wsd_n = args.lr_wsd_decay_samples
        else:
            warmup_n, decay_n = args.lr_warmup_iters * gbs, (args.lr_decay_iters or args.train_iters) * gbs
            incr_n = args.train_iters * gbs
            wsd_n = args.lr_wsd_decay_iters * gbs if args.lr_wsd_decay_iters else None
        try:
            with quiet():
                scheduler = OptimizerParamScheduler(
                    Optimizer(),
                    init_lr=args.lr_warmup_init,
                    max_lr=args.lr,
                    min_lr=args.min_lr,
                    lr_warmup_steps=warmup_n,
                    lr_decay_steps=decay_n,
                    lr_decay_style=args.lr_decay_style,
                    start_wd=args.weight_decay,
                    end_wd=args.weight_decay,
                    wd_incr_steps=incr_n,
                    wd_incr_style="constant",
                    use_checkpoint_opt_param_scheduler=False,
                    override_opt_param_scheduler=args.override_opt_param_scheduler,
                    wsd_decay_steps=wsd_n,
                    lr_wsd_decay_style=args.lr_wsd_decay_style,
                )
                if previous_scheduler_state is not None:
                    # What loading the previous phase's checkpoint does.
                    scheduler.load_state_dict(previous_scheduler_state)
        except Exception as e:  # noqa: BLE001
            r.fail(f"{label}: OptimizerParamScheduler rejects the schedule: {type(e).__name__}: {e}")
            rt.finish()
            continue
        if previous_scheduler_state is not None:
            r.ok(f"{label}: loads the previous phase's scheduler state (iteration {phase['start_step']})")
        start = phase["start_step"]

        def lr_at(k):
            if consumed_before is not None:
                scheduler.num_steps = consumed_before[start + k]
            else:
                scheduler.num_steps = (start + k) * gbs
            return scheduler.get_lr({})

        lr_replay_row(rt, replay(r, f"{label} OptimizerParamScheduler", phase, lr_at, 1))
        scheduler.num_steps = consumed_before[end] if consumed_before is not None else end * gbs
        previous_scheduler_state = scheduler.state_dict()
        rt.finish()


def count_megatron_parameters(r, label, args, kw, padded):
    """Builds megatron-core's GPTModel on the meta device (one rank: TP = PP = 1) with the
    padded vocabulary and counts its parameters."""
    try:
        with quiet():
            import torch
            from megatron.core import parallel_state
            from megatron.core.models.gpt import GPTModel
            from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
            from megatron.core.transformer import TransformerConfig

            init_process_group()
            if not parallel_state.model_parallel_is_initialized():
                parallel_state.initialize_model_parallel(1, 1)
            one = dict(
                kw,
                tensor_model_parallel_size=1,
                pipeline_model_parallel_size=1,
                virtual_pipeline_model_parallel_size=None,
                context_parallel_size=1,
                sequence_parallel=False,
                num_layers_in_first_pipeline_stage=None,
                num_layers_in_last_pipeline_stage=None,
                use_cpu_initialization=True,
                perform_initialization=False,
                fp8=None,
                # Transformer Engine's CPU offload (absent here, with the local layer spec)
                # moves activations, not parameters: the count is the same without it.
                cpu_offloading=False,
                cpu_offloading_num_layers=0,
            )
            config = TransformerConfig(**one)
            with torch.device("meta"):
                model = GPTModel(
                    config=config,
                    transformer_layer_spec=get_gpt_layer_local_spec(normalization=args.normalization),
                    vocab_size=padded,
                    max_sequence_length=args.max_position_embeddings,
                    share_embeddings_and_output_weights=not args.untie_embeddings_and_output_weights,
                    position_embedding_type=args.position_embedding_type,
                )
            return sum(p.numel() for p in model.parameters())
    except Exception as e:  # noqa: BLE001
        r.fail(f"{label}: building megatron-core's GPTModel fails: {type(e).__name__}: {e}")
        return None


# --------------------------------------------------------------------------------------
# Kubernetes


def validate_kubernetes(directory, r, warnings):
    r.section(f"Kubernetes: {directory}")
    plan = load_plan(directory)
    mirror_warnings(r, "kubernetes", warnings)
    try:
        import yaml
    except ImportError as e:
        r.skip(f"cannot import yaml: {e}")
        return
    path = Path(directory) / "kubernetes.yaml"
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        r.fail(f"{path.name} is not YAML: {e}")
        return
    r.ok(f"{path.name}: {len(docs)} documents parse")
    # The Kubernetes API schemas, strict (a field the API does not define is an error).
    try:
        import kubernetes_validate
        from importlib.metadata import version as dist_version
    except ImportError as e:
        r.skip(f"cannot import kubernetes_validate: {e}")
    else:
        r.note(f"kubernetes-validate {dist_version('kubernetes-validate')}: API schemas {', '.join(KUBERNETES_VERSIONS)}")
        for version in KUBERNETES_VERSIONS:
            bad = []
            for d in docs:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except Exception as e:  # noqa: BLE001 - ValidationError, SchemaNotFoundError
                    what = getattr(e, "caught", e)
                    where = "/".join(str(x) for x in getattr(what, "path", []))
                    bad.append(f"{d.get('kind')} {d.get('metadata', {}).get('name')}: {where}: {getattr(what, 'message', what)}")
            for b in bad:
                r.fail(f"{path.name} against Kubernetes {version}: {b}")
            if not bad:
                r.ok(f"{path.name}: all {len(docs)} documents ({', '.join(sorted(set(d['kind'] for d in docs)))}) valid against the Kubernetes {version} API schemas (strict)")
    services = [d for d in docs if d.get("kind") == "Service"]
    jobs = {d["metadata"]["annotations"]["kiln.dev/step-name"]: d for d in docs if d.get("kind") == "Job"}
    label = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    if len(services) != 1 or services[0]["spec"].get("clusterIP") != "None":
        r.fail("expected one headless Service")
        return
    service = services[0]["metadata"]["name"]
    topo = plan["topology"]
    seen = []
    problems = []
    for s in plan["steps"]:
        job = jobs.get(s["name"])
        if job is None:
            problems.append(f"no Job for step {s['name']}")
            continue
        name = job["metadata"]["name"]
        after = job["metadata"]["annotations"].get("kiln.dev/after", "").split()
        if any(a not in seen for a in after):
            problems.append(f"{name} comes before a Job it waits for")
        seen.append(name)
        if not label.match(name) or len(name) > 52:
            problems.append(f"{name} is not a DNS label leaving room for the pod index")
        spec = job["spec"]
        pod = spec["template"]["spec"]
        c = pod["containers"][0]
        if s["kind"] in ("train", "evaluate"):
            env = {e["name"]: e["value"] for e in c["env"]}
            want = {
                "completionMode": "Indexed",
                "completions": s["resources"]["nodes"],
                "parallelism": s["resources"]["nodes"],
            }
            for k, v in want.items():
                if spec.get(k) != v:
                    problems.append(f"{name}: {k} {spec.get(k)!r}, want {v!r}")
            if pod.get("subdomain") != service:
                problems.append(f"{name}: subdomain {pod.get('subdomain')!r}")
            if c["resources"]["limits"].get("nvidia.com/gpu") != topo["gpus_per_node"]:
                problems.append(f"{name}: GPUs per pod")
            if env.get("WORLD_SIZE") != str(s["resources"]["ranks"]) or env.get("GPUS_PER_NODE") != str(topo["gpus_per_node"]):
                problems.append(f"{name}: WORLD_SIZE / GPUS_PER_NODE")
            if env.get("MASTER_ADDR") != f"{name}-0.{service}":
                problems.append(f"{name}: MASTER_ADDR {env.get('MASTER_ADDR')!r}")
            if c.get("args") != s["command"]:
                problems.append(f"{name}: args {c.get('args')!r}")
        else:
            if spec.get("completions") != 1 or c.get("command") != s["command"]:
                problems.append(f"{name}: a single pod running the step's command")
    for p in problems:
        r.fail(p)
    if not problems:
        r.ok(
            f"{path.name}: {len(jobs)} Jobs match the plan's steps (indexed Jobs for training, "
            f"ranks, GPUs, rendezvous at <job>-0.{service}) in dependency order"
        )




# --------------------------------------------------------------------------------------


def venv_python(name):
    return ROOT / name / "bin" / "python"


def in_venv(name):
    return Path(sys.prefix).resolve() == (ROOT / name).resolve()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for engine in ENGINE_VENV:
        ap.add_argument(f"--{engine}", metavar="DIR")
    ap.add_argument(
        "--warnings",
        metavar="TARGET=FILE",
        action="append",
        default=[],
        help="the stderr of `kiln emit --target TARGET`: its K-E001 warnings must mirror NOT_EXPRESSED",
    )
    ap.add_argument("--here", action="store_true", help="run every section in this Python (no dispatch)")
    a = ap.parse_args()
    dirs = {e: getattr(a, e) for e in ENGINE_VENV if getattr(a, e)}
    if not dirs:
        ap.error("name at least one emitted directory")
    warning_files = dict(w.split("=", 1) for w in a.warnings)
    # Sections whose engine lives in another virtual environment run there.
    elsewhere = {}
    if not a.here:
        for e in dirs:
            venv = ENGINE_VENV[e]
            if not in_venv(venv) and venv_python(venv).exists():
                elsewhere.setdefault(venv, []).append(e)
    codes = []
    r = Report()
    for e, d in dirs.items():
        if any(e in es for es in elsewhere.values()):
            continue
        w = read_warnings(warning_files.get(e), e)
        {"deepspeed": validate_deepspeed, "torchtitan": validate_torchtitan, "megatron": validate_megatron, "kubernetes": validate_kubernetes}[e](d, r, w)
    print()
    if r.summary:
        print("round-trip summary (equal / differ / not expressed / TODO):")
        for engine, label, c in r.summary:
            print(f"  ROUNDTRIP {label}: {c['equal']} equal, {c['DIFFERS']} differ, {c['not expressed']} not expressed, {c['todo']} TODO")
    if r.todo:
        print("TODO (emission or plan gaps being fixed; EMISSION_TODO):")
        for engine, label, field, plan, got, text in r.todo:
            print(f"  TODO {label}: {field}: plan {plan}, engine {got}: {text}")
    if r.failures:
        print(f"FAILED: {r.failures} problem(s)")
        codes.append(1)
    elif r.skipped:
        print(f"INCOMPLETE: {r.skipped} engine(s) could not be loaded (reasons above)")
        codes.append(3)
    elif dirs.keys() - {e for es in elsewhere.values() for e in es}:
        print("all emitted files validated")
        codes.append(0)
    sys.stdout.flush()
    for venv, engines in elsewhere.items():
        cmd = [str(venv_python(venv)), __file__, "--here"]
        for e in engines:
            cmd += [f"--{e}", dirs[e]]
            if e in warning_files:
                cmd += ["--warnings", f"{e}={warning_files[e]}"]
        print(f"\n(in {venv}: {' '.join(engines)})")
        sys.stdout.flush()
        # Without this process's one-process group (its MASTER_PORT is taken).
        env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
        codes.append(subprocess.run(cmd, env=env).returncode)
    return 1 if 1 in codes else max(codes, default=0) if all(c in (0, 3) for c in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
