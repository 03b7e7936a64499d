#!/usr/bin/env python3
"""Validates what `kiln emit` writes for the engine targets with the engines' own code.

    .venv/bin/python tests/engines/validate.py --deepspeed DIR --torchtitan DIR \
        --megatron DIR [--kubernetes DIR]

Each DIR is the output of `kiln emit --target T -o DIR` (plan.json inside). Every file is
loaded by the engine's own configuration code, and its values are compared with the plan:

- DeepSpeed: deepspeed.runtime.config.DeepSpeedConfig with a minimal mpu that reports the
  plan's data-parallel size (on a one-process gloo group, so it runs on CPU); the scheduler
  is built from deepspeed.runtime.lr_schedules and replayed against kiln's schedule.
- torchtitan: torchtitan.config.ConfigManager loads the emitted module (`--module`,
  `--config`), ParallelDims validates the layout, the model is built on the meta device and
  its parameters counted, and the LR scheduler is built and replayed.
- Megatron-LM: the script's argument list is parsed with Megatron-LM's argument parser if
  it is installed (megatron.training), else with a transcription of it (see
  MEGATRON_LM_FLAGS); megatron-core's TransformerConfig is built from it as Megatron-LM's
  core_transformer_config_from_args does, a GPTModel is built on the meta device and its
  parameters counted, and OptimizerParamScheduler replays the schedule (including loading
  the previous phase's scheduler state, as a later phase does).
- Kubernetes (optional): every document parses as YAML and each step's Job matches the plan.

Exit status: 0 when everything validated, 1 when anything was rejected or differs from
the plan, 3 when an engine could not be imported (the reason is printed).
"""

import argparse
import contextlib
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
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


class Report:
    def __init__(self):
        self.failures = 0
        self.skipped = 0

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
        if got == want or (
            isinstance(want, float)
            and isinstance(got, (int, float))
            and math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-300)
        ):
            return True
        self.fail(f"{what}: emitted {got!r}, the plan says {want!r}")
        return False

    def checks(self, label, pairs):
        bad = [p for p in pairs if not self.check(f"{label}: {p[0]}", *p[1:])]
        if not bad:
            self.ok(f"{label}: {', '.join(p[0] for p in pairs)} match the plan")


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


def kiln_lr(lr, step, steps):
    """kiln's LrSchedule::at (compiler/src/plan/schedule.rs)."""

    def frac(a, b):
        return 1.0 if b == 0 else a / b

    kind = lr["kind"]
    if kind == "constant":
        w = lr["warmup_steps"]
        return lr["value"] * frac(step + 1, w) if step < w else lr["value"]
    if kind == "cosine":
        w, peak, final = lr["warmup_steps"], lr["peak"], lr["final_lr"]
        if step < w:
            return peak * frac(step + 1, w)
        progress = min(frac(step - w, max(steps - w, 0)), 1.0)
        return final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * progress))
    if kind == "wsd":
        w, peak, d = lr["warmup_steps"], lr["peak"], lr["decay_steps"]
        start = max(steps - d, 0)
        if step < w:
            return peak * frac(step + 1, w)
        if step < start:
            return peak
        return peak * (1.0 - min(frac(step - start, d), 1.0))
    return lr["from"] + (lr["to"] - lr["from"]) * min(frac(step, steps), 1.0)


def sample_steps(steps, marks=()):
    """Every step of a short phase; a long phase's ends, marks and an even sample."""
    if steps <= 6000:
        return range(steps)
    picked = set(range(2000)) | set(range(steps - 2000, steps))
    for m in marks:
        picked |= set(range(max(0, m - 50), min(steps, m + 50)))
    picked |= {steps * i // 2000 for i in range(2000)}
    return sorted(picked)


def replay(r, label, phase, got, max_shift, first_free=0):
    """Compares an engine's learning rate at each step of a phase with kiln's.

    A value `shift` steps off lies within kiln's values over [k - shift, k + shift]. Steps
    below `first_free` are reported, not failed (a declared K-E001 difference)."""
    lr, steps = phase["lr"], phase["steps"]
    # want[j + 1] is kiln's value at step j, from one step before the phase (the warm-up's
    # zero) to one after its end.
    want = [kiln_lr(lr, k, steps) for k in range(-1, steps + 1)]
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
    elif worst <= max_shift:
        k, x, w = worst_at
        r.ok(
            f"{label}: the learning rate is within {worst} step(s) of kiln's at all "
            f"{checked} steps checked ({exact} exact; e.g. step {k}: {x:.6g} vs {w:.6g})"
        )
    else:
        k, x, w = worst_at
        r.fail(
            f"{label}: at step {k} of the phase the learning rate is {x!r}; kiln's schedule "
            f"says {w!r} (more than {max_shift} step(s) off)"
        )


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
# DeepSpeed


def validate_deepspeed(directory, r):
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
            deepspeed.init_distributed(
                dist_backend="gloo", auto_mpi_discovery=False, verbose=False
            )
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

    precision = exp["precision"]
    o = exp["optimizer"]
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
        r.checks(
            label,
            [
                ("data-parallel size", cfg.world_size, topo["data"]),
                ("train_batch_size", cfg.train_batch_size, sched["global_batch"]),
                ("train_micro_batch_size_per_gpu", cfg.train_micro_batch_size_per_gpu, sched["micro_batch"]),
                ("gradient_accumulation_steps", cfg.gradient_accumulation_steps, sched["accumulation"]),
                ("zero_optimization.stage", int(cfg.zero_optimization_stage), exp["parallel"]["zero"]),
                ("gradient_clipping", cfg.gradient_clipping, o["grad_clip"]),
                ("bf16.enabled", cfg.bfloat16_config.enabled, precision in ("bf16_mixed", "fp8_mixed")),
                ("fp16.enabled", cfg.float16_config.enabled, precision == "fp16_mixed"),
                ("optimizer", cfg.optimizer_name, "adamw"),
                ("optimizer betas", list(cfg.optimizer_params["betas"]), [o["beta1"], o["beta2"]]),
                ("optimizer eps", cfg.optimizer_params["eps"], o["eps"]),
                ("optimizer weight_decay", cfg.optimizer_params["weight_decay"], o["weight_decay"]),
                ("wall_clock_breakdown", cfg.wall_clock_breakdown, False),
            ],
        )
        if precision == "fp16_mixed":
            r.check("fp16 dynamic loss scaling (loss_scale 0)", raw["fp16"].get("loss_scale"), 0)
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
            replay(r, f"{label} {cfg.scheduler_name} (warm-up and stable part)", flat, lr_at, 2)
        else:
            replay(r, f"{label} {cfg.scheduler_name}", phase, lr_at, 2, first_free)


# --------------------------------------------------------------------------------------
# torchtitan


def import_torchtitan(r):
    """Imports torchtitan's trainer, or says exactly why it cannot."""
    try:
        with quiet():
            import torchtitan.trainer  # noqa: F401
        return True
    except ImportError as e:
        reason = f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001
        r.skip(f"cannot import torchtitan.trainer: {type(e).__name__}: {e}")
        return False
    import torch
    import torch.distributed.fsdp as fsdp

    if "DataParallelMeshDims" not in reason:
        r.skip(f"cannot import torchtitan.trainer: {reason}")
        return False
    r.note(
        f"torchtitan.trainer does not import with torch {torch.__version__}: {reason} "
        "(torchtitan 0.3.0 is built against a newer torch). A placeholder class "
        "torch.distributed.fsdp.DataParallelMeshDims is injected so its configuration "
        "modules import; it is only a type hint here and FSDP is never applied."
    )

    class DataParallelMeshDims:  # the placeholder
        pass

    fsdp.DataParallelMeshDims = DataParallelMeshDims
    try:
        with quiet():
            import torchtitan.trainer  # noqa: F401,F811
        return True
    except Exception as e:  # noqa: BLE001
        r.skip(f"cannot import torchtitan.trainer even so: {type(e).__name__}: {e}")
        return False


def validate_torchtitan(directory, r):
    r.section(f"torchtitan: {directory}")
    plan = load_plan(directory)
    try:
        with quiet():
            import torch
            import torchtitan  # noqa: F401
    except Exception as e:  # noqa: BLE001
        r.skip(f"cannot import torchtitan: {type(e).__name__}: {e}")
        return
    if not import_torchtitan(r):
        return
    from torchtitan.config import ConfigManager
    from torchtitan.distributed.activation_checkpoint import FullAC, SelectiveAC
    from torchtitan.distributed.parallel_dims import ParallelDims
    from torchtitan.hf_datasets.text_datasets import DATASETS

    exp, topo, sched = plan["experiment"], plan["topology"], plan["schedule"]
    m, par = exp["model"], exp["parallel"]
    llama_like = (
        m["activation"] == "swiglu"
        and m["norm"] == "rmsnorm"
        and m["position"] == "rope"
        and not m["bias"]
        and m["dropout"] == 0
    )
    sys.path.insert(0, str(Path(directory).resolve()))
    for i, phase in enumerate(sched["phases"]):
        name = phase["name"]
        module = f"torchtitan_{name}"
        path = next(
            (Path(directory) / f"{module}{ext}" for ext in (".py", ".toml") if (Path(directory) / f"{module}{ext}").exists()),
            None,
        )
        if path is None:
            r.fail(f"{module}.py is missing")
            continue
        label = path.name
        function = f"{exp['name']}_{name}"
        if path.suffix != ".py":
            r.note(f"{label} holds Python (torchtitan 0.3.0's config format); loaded as module {module}")
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
        t, p = cfg.training, cfg.parallelism
        end = phase["start_step"] + phase["steps"]
        pipelined = topo["pipeline"] > 1
        local = sched["micro_batch"] * (sched["accumulation"] if pipelined else 1)
        want_dtype = "float32" if exp["precision"] == "fp32" else "bfloat16"
        r.checks(
            f"{label} training",
            [
                ("training.steps (the phase's last step)", t.steps, end),
                ("training.local_batch_size", t.local_batch_size, local),
                ("training.global_batch_size", t.global_batch_size, sched["global_batch"]),
                ("training.seq_len", t.seq_len, sched["seq_len"]),
                ("training.max_norm", t.max_norm, exp["optimizer"]["grad_clip"]),
                ("training.mixed_precision_param", t.mixed_precision_param, want_dtype),
            ],
        )
        # Parallelism, validated by torchtitan's own ParallelDims.
        try:
            dims = ParallelDims.from_config(p, topo["world"])
        except Exception as e:  # noqa: BLE001
            r.fail(f"{label}: ParallelDims rejects the layout for {topo['world']} GPUs: {e}")
        else:
            zero = par["zero"]
            want_rep, want_shard = (topo["data"], 1) if zero == 0 else (1, topo["data"])
            r.checks(
                f"{label} parallelism (ParallelDims accepts it for {topo['world']} GPUs)",
                [
                    ("data_parallel_replicate_degree", dims.dp_replicate, want_rep),
                    ("data_parallel_shard_degree", dims.dp_shard, want_shard),
                    ("tensor_parallel_degree", dims.tp, topo["tensor"]),
                    ("pipeline_parallel_degree", dims.pp, topo["pipeline"]),
                    ("context_parallel_degree", dims.cp, topo["context"]),
                    (
                        "fsdp_reshard_after_forward",
                        p.fsdp_reshard_after_forward,
                        {0: "default", 3: "always"}.get(zero, "never"),
                    ),
                ],
            )
            dp = dims.dp_replicate * dims.dp_shard
            if t.global_batch_size % (t.local_batch_size * dp):
                r.fail(f"{label}: global batch {t.global_batch_size} is not a multiple of local × dp")
            else:
                acc = t.global_batch_size // (t.local_batch_size * dp)
                want = 1 if pipelined else sched["accumulation"]
                r.check(f"{label} gradient accumulation steps", acc, want) and r.ok(
                    f"{label}: {acc} gradient accumulation step(s) of {t.local_batch_size} sequences per rank"
                )
        if pipelined:
            parts = p.module_fqns_per_model_part
            if parts is None:
                r.note(f"{label}: torchtitan splits the pipeline itself (K-E001)")
            else:
                layers = [sum(1 for x in part if x.startswith("layers.")) for part in parts]
                flat = [x for part in parts for x in part]
                want_flat = ["tok_embeddings"] + [f"layers.{j}" for j in range(m["layers"])] + ["norm", "lm_head"]
                v = topo["virtual_stages"]
                want_layers = [n // v for n in topo["stage_layers"] for _ in range(v)] if v > 1 else topo["stage_layers"]
                if r.check(f"{label} modules of the model parts, in order", flat, want_flat) and r.check(
                    f"{label} layers per model part", layers, want_layers
                ):
                    r.ok(f"{label}: {len(parts)} model parts with {layers} layers")
        want_ac = {"selective_op": SelectiveAC.Config, "full": FullAC.Config}.get(par["recompute"])
        got_ac = cfg.activation_checkpoint
        if (want_ac is None and got_ac is None) or (want_ac is not None and isinstance(got_ac, want_ac)):
            r.ok(f"{label}: activation checkpointing {type(got_ac).__qualname__ if got_ac else None} for recompute = {par['recompute']}")
        else:
            r.fail(f"{label}: activation checkpointing {got_ac!r} for recompute = {par['recompute']}")
        c = cfg.checkpoint
        r.checks(
            f"{label} checkpoint",
            [
                ("checkpoint.enable", c.enable, True),
                ("checkpoint.interval", c.interval, sched["checkpoint_every_steps"]),
                ("checkpoint.keep_latest_k", c.keep_latest_k, max(sched["checkpoint_keep"], 2) if sched["checkpoint_keep"] else 0),
                ("debug.seed", cfg.debug.seed, exp["seed"]),
            ],
        )
        if i > 0:
            prev = sched["phases"][i - 1]
            prev_step = step_named(plan, f"train.{prev['name']}")
            want = os.path.abspath(f"{prev_step['outputs'][0]}/checkpoint/step-{prev['start_step'] + prev['steps']}")
            r.check(f"{label} checkpoint.initial_load_path (the previous phase's last checkpoint)", c.initial_load_path, want)
        # Data: the phase's mix over the registered sources.
        sources = {f"{exp['name']}.{s['name']}": s for s in exp["sources"]}
        got_mix = {s.dataset: s.weight for s in cfg.dataloader.sources}
        want_mix = {f"{exp['name']}.{k}": w for k, w in phase["mix"].items()}
        if r.check(f"{label} dataloader sources and weights", got_mix, want_mix):
            bad = [
                k
                for k in got_mix
                if k not in DATASETS
                or DATASETS[k].path != sources[k]["path"]
                or DATASETS[k].sample_processor({sources[k]["text_field"]: "x"}) != "x"
            ]
            if bad:
                r.fail(f"{label}: datasets {bad} are not registered with the sources' paths and text fields")
            else:
                r.ok(f"{label}: the mix reads {len(got_mix)} registered datasets with the sources' paths and text fields")
        # The model, built on the meta device.
        spec = cfg.model_spec
        try:
            with quiet(), torch.device("meta"):
                model = spec.model.build()
        except Exception as e:  # noqa: BLE001
            r.fail(f"{label}: building the model ({spec.name} {spec.flavor}) fails: {type(e).__name__}: {e}")
        else:
            layer = spec.model.layers[0]
            attn = layer.attention
            r.checks(
                f"{label} model {spec.name} flavor {spec.flavor}",
                [
                    ("layers", len(spec.model.layers), m["layers"]),
                    ("dim", spec.model.dim, m["hidden"]),
                    ("heads", attn.n_heads, m["heads"]),
                    ("kv heads", attn.n_kv_heads or attn.n_heads, m["kv_heads"]),
                    ("FFN size", layer.feed_forward.w1.out_features, m["ffn_hidden"]),
                    ("vocabulary", spec.model.vocab_size, m["vocab"]),
                    ("tied embeddings", spec.model.enable_weight_tying, m["tied_embeddings"]),
                ],
            )
            count = sum(x.numel() for x in model.parameters())
            if count == m["params"]:
                r.ok(f"{label}: the model has {count:,} parameters, kiln's count")
            elif not llama_like:
                r.note(
                    f"{label}: the model has {count:,} parameters, kiln counts {m['params']:,} for "
                    f"the declared architecture (torchtitan builds Llama 3's, as K-E001 says)"
                )
            else:
                r.fail(f"{label}: the model has {count:,} parameters, kiln counts {m['params']:,}")
        # The learning rate, as torchtitan's scheduler computes it at each step of the run.
        kwargs = cfg.optimizer.param_groups[0].optimizer_kwargs
        r.checks(
            f"{label} optimizer",
            [
                ("optimizer", cfg.optimizer.param_groups[0].optimizer_name, "AdamW"),
                ("betas", tuple(kwargs["betas"]), (exp["optimizer"]["beta1"], exp["optimizer"]["beta2"])),
                ("eps", kwargs["eps"], exp["optimizer"]["eps"]),
                ("weight_decay", kwargs["weight_decay"], exp["optimizer"]["weight_decay"]),
            ],
        )
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=kwargs["lr"])
        with quiet():
            schedulers = cfg.lr_scheduler.build(optimizers=[opt], training_steps=t.steps)
        factor = schedulers.schedulers[0].lr_lambdas[0]
        start = phase["start_step"]
        later_warmup = start > 0 and phase["lr"].get("warmup_steps", 0) > 1
        replay(
            r,
            f"{label} LRSchedulersContainer",
            phase,
            lambda k: kwargs["lr"] * factor(start + k),
            1,
            first_free=phase["lr"].get("warmup_steps", 0) if later_warmup else 0,
        )
    sys.path.remove(str(Path(directory).resolve()))


# --------------------------------------------------------------------------------------
# Megatron-LM

# Megatron-LM's argument parser (megatron/training/arguments.py) for the flags kiln emits,
# transcribed from NVIDIA/Megatron-LM at commit 000c4ac24f61159c138b0975def722c65245983c
# (the tree that goes with megatron-core 0.16): flag -> (dest, action, type, choices, nargs).
# Used only when megatron.training cannot be imported (megatron-core does not ship it).
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
            f"({type(e).__name__}: {e}): megatron-core 0.16.1 ships megatron.core only, and "
            "pretrain_gpt.py and megatron/training/arguments.py come with a Megatron-LM "
            "checkout. Flags are checked against the transcription of that parser in "
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


def validate_megatron(directory, r):
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
    r.note(f"megatron-core {megatron.core.__version__}")
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
        try:
            if real:
                args = parser.parse_args(words)
            else:
                args, unknown = parser.parse_known_args(words)
                if unknown:
                    raise argparse.ArgumentError(None, f"unrecognized arguments: {' '.join(unknown)}")
        except (argparse.ArgumentError, SystemExit) as e:
            r.fail(f"{label}: Megatron-LM's argument parser rejects the arguments: {e}")
            continue
        flags = [w for w in words if w.startswith("--")]
        r.ok(f"{label}: the parser accepts all {len(flags)} flags")
        # torchrun and the environment.
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
        # The checks of Megatron-LM's validate_args that apply to these arguments.
        world = topo["world"]
        model_size = args.tensor_model_parallel_size * args.pipeline_model_parallel_size * args.context_parallel_size
        problems = []
        if world % model_size:
            problems.append(f"world size {world} is not divisible by TP×PP×CP = {model_size}")
        dp = world // model_size
        if args.global_batch_size % (args.micro_batch_size * dp):
            problems.append("global batch is not a multiple of micro batch × data-parallel size")
        if args.min_lr > args.lr:
            problems.append("--min-lr exceeds --lr")
        if args.seq_length > args.max_position_embeddings:
            problems.append("--seq-length exceeds --max-position-embeddings")
        if args.fp16 and args.bf16:
            problems.append("--fp16 and --bf16 together")
        if args.recompute_granularity == "selective" and args.recompute_method is not None:
            problems.append("selective recompute with a recompute method")
        if args.save and not args.save_interval:
            problems.append("--save without --save-interval")
        if args.context_parallel_size > 1 and args.seq_length % (2 * args.context_parallel_size):
            problems.append("--seq-length is not a multiple of 2 × CP")
        vpp = None
        if args.num_layers_per_virtual_pipeline_stage is not None:
            if args.decoder_first_pipeline_num_layers is not None or args.decoder_last_pipeline_num_layers is not None:
                problems.append("--num-layers-per-virtual-pipeline-stage with uneven stages")
            per_stage = args.num_layers // args.pipeline_model_parallel_size
            vpp = per_stage // args.num_layers_per_virtual_pipeline_stage
        elif args.num_virtual_stages_per_pipeline_rank is not None:
            vpp = args.num_virtual_stages_per_pipeline_rank
        elif args.decoder_first_pipeline_num_layers is None and args.decoder_last_pipeline_num_layers is None:
            if args.num_layers % args.pipeline_model_parallel_size:
                problems.append("layers not divisible by the pipeline size")
        if vpp == 1:
            vpp = None
        if vpp is not None and args.pipeline_model_parallel_size <= 1:
            problems.append("interleaved schedule without a pipeline")
        for p in problems:
            r.fail(f"{label}: Megatron-LM's validate_args would stop: {p}")
        if not problems:
            r.ok(f"{label}: passes the checks of Megatron-LM's validate_args that apply (data-parallel size {dp})")
        # Values against the plan.
        stages = topo["stage_layers"]
        uneven = len(set(stages)) > 1
        r.checks(
            f"{label} parallel layout",
            [
                ("tensor", args.tensor_model_parallel_size, topo["tensor"]),
                ("pipeline", args.pipeline_model_parallel_size, topo["pipeline"]),
                ("context", args.context_parallel_size, topo["context"]),
                ("data (world / TP×PP×CP)", dp, topo["data"]),
                ("virtual stages", vpp or 1, topo["virtual_stages"]),
                ("first stage layers", args.decoder_first_pipeline_num_layers, stages[0] if uneven else None),
                ("last stage layers", args.decoder_last_pipeline_num_layers, stages[-1] if uneven else None),
                ("sequence parallel", args.sequence_parallel, par["sequence_parallel"]),
                ("distributed optimizer", args.use_distributed_optimizer, par["zero"] >= 1),
            ],
        )
        if par["zero"] >= 2:
            r.note(f"{label}: ZeRO {par['zero']} runs as the distributed optimizer (ZeRO 1), as K-E001 says")
        r.checks(
            f"{label} model",
            [
                ("layers", args.num_layers, m["layers"]),
                ("hidden", args.hidden_size, m["hidden"]),
                ("ffn", args.ffn_hidden_size, m["ffn_hidden"]),
                ("heads", args.num_attention_heads, m["heads"]),
                ("query groups", args.num_query_groups if args.group_query_attention else args.num_attention_heads, m["kv_heads"]),
                ("kv channels", args.kv_channels, m["head_dim"]),
                ("seq length", args.seq_length, m["seq_len"]),
                ("swiglu", args.swiglu, m["activation"] == "swiglu"),
                ("normalization", args.normalization, "LayerNorm" if m["norm"] == "layernorm" else "RMSNorm"),
                ("tied embeddings", not args.untie_embeddings_and_output_weights, m["tied_embeddings"]),
                ("linear biases", args.add_bias_linear, m["bias"]),
                ("dropout", (args.attention_dropout, args.hidden_dropout), (m["dropout"], m["dropout"])),
            ],
        )
        o = exp["optimizer"]
        precision = exp["precision"]
        r.checks(
            f"{label} optimizer, precision, recompute",
            [
                ("beta1", args.adam_beta1, o["beta1"]),
                ("beta2", args.adam_beta2, o["beta2"]),
                ("eps", args.adam_eps, o["eps"]),
                ("weight decay", args.weight_decay, o["weight_decay"]),
                ("clip grad", args.clip_grad, o["grad_clip"]),
                ("bf16", args.bf16, precision in ("bf16_mixed", "fp8_mixed")),
                ("fp16", args.fp16, precision == "fp16_mixed"),
                ("fp8", args.fp8, "hybrid" if precision == "fp8_mixed" else None),
                (
                    "recompute",
                    args.recompute_granularity,
                    {"selective": "selective", "full": "full", "selective_op": "full"}.get(par["recompute"]),
                ),
            ],
        )
        end = phase["start_step"] + phase["steps"]
        r.checks(
            f"{label} batch, steps, checkpoints, evaluation, seed",
            [
                ("micro batch", args.micro_batch_size, sched["micro_batch"]),
                ("global batch", args.global_batch_size, sched["global_batch"]),
                ("micro-batches per step", args.global_batch_size // (args.micro_batch_size * dp), sched["accumulation"]),
                ("train iters (the phase's last step)", args.train_iters, end),
                ("save interval", args.save_interval, sched["checkpoint_every_steps"]),
                ("eval interval", args.eval_interval, sched["eval_every_steps"]),
                ("seed", args.seed, exp["seed"]),
                ("--save (the phase's training step output)", args.save, step_named(plan, f"train.{name}")["outputs"][0]),
            ],
        )
        if i > 0:
            prev = step_named(plan, f"train.{sched['phases'][i - 1]['name']}")
            r.check(f"{label} --load on a first run (the previous phase's output)", assigned.get("LOAD"), prev["outputs"][0])
        # Data: weight/prefix pairs over the encode steps' outputs.
        data = args.data_path or []
        pairs = dict(zip(data[1::2], (float(x) for x in data[0::2])))
        want = {
            f"{step_named(plan, f'encode.{s}')['outputs'][0]}/text_document": w for s, w in phase["mix"].items()
        }
        if r.check(f"{label} --data-path (weights and encode-step prefixes)", pairs, want):
            r.ok(f"{label}: --data-path blends {len(pairs)} encoded sources with the phase's weights")
        split = [float(x) for x in re.findall(r"[.0-9]+", args.split or "")]
        if len(split) != 3 or sum(split) <= 0 or split[1] <= 0:
            r.fail(f"{label}: --split {args.split!r} gives no validation data")
        # TransformerConfig, as Megatron-LM's core_transformer_config_from_args builds it.
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
            # megatron/training/arguments.py, validate_args: N > 0 turns CPU offloading on.
            cpu_offloading=args.cpu_offloading_num_layers > 0,
            cpu_offloading_num_layers=args.cpu_offloading_num_layers,
            attention_backend=AttnBackend[args.attention_backend],
            variable_seq_lengths=False,
            deallocate_pipeline_outputs=True,
        )
        if args.swiglu:
            kw.update(gated_linear_unit=True, activation_func=F.silu)
        try:
            with quiet():
                config = TransformerConfig(**kw)
        except Exception as e:  # noqa: BLE001
            r.fail(f"{label}: megatron-core's TransformerConfig rejects it: {type(e).__name__}: {e}")
            config = None
        else:
            r.ok(f"{label}: megatron-core's TransformerConfig accepts the model and parallel layout")
        if config is not None:
            count_megatron_parameters(r, label, args, kw, m, dp)
        # The learning rate, as Megatron-LM's OptimizerParamScheduler computes it.
        gbs = args.global_batch_size

        class Optimizer:
            param_groups = [{}]

        try:
            with quiet():
                scheduler = OptimizerParamScheduler(
                    Optimizer(),
                    init_lr=args.lr_warmup_init,
                    max_lr=args.lr,
                    min_lr=args.min_lr,
                    lr_warmup_steps=args.lr_warmup_iters * gbs,
                    lr_decay_steps=(args.lr_decay_iters or args.train_iters) * gbs,
                    lr_decay_style=args.lr_decay_style,
                    start_wd=args.weight_decay,
                    end_wd=args.weight_decay,
                    wd_incr_steps=args.train_iters * gbs,
                    wd_incr_style="constant",
                    use_checkpoint_opt_param_scheduler=False,
                    override_opt_param_scheduler=args.override_opt_param_scheduler,
                    wsd_decay_steps=args.lr_wsd_decay_iters * gbs if args.lr_wsd_decay_iters else None,
                    lr_wsd_decay_style=args.lr_wsd_decay_style,
                )
                if previous_scheduler_state is not None:
                    # What loading the previous phase's checkpoint does.
                    scheduler.load_state_dict(previous_scheduler_state)
        except Exception as e:  # noqa: BLE001
            r.fail(f"{label}: OptimizerParamScheduler rejects the schedule: {type(e).__name__}: {e}")
            continue
        if previous_scheduler_state is not None:
            r.ok(f"{label}: loads the previous phase's scheduler state (iteration {phase['start_step']})")
        start = phase["start_step"]

        def lr_at(k):
            scheduler.num_steps = (start + k) * gbs
            return scheduler.get_lr({})

        replay(r, f"{label} OptimizerParamScheduler", phase, lr_at, 1)
        scheduler.num_steps = end * gbs
        previous_scheduler_state = scheduler.state_dict()


def count_megatron_parameters(r, label, args, kw, m, dp):
    """Builds megatron-core's GPTModel on the meta device (one rank: TP = PP = 1) and
    compares its parameters with kiln's count."""
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
            # The vocabulary as Megatron-LM pads it (megatron/training/tokenizer).
            multiple = args.make_vocab_size_divisible_by * args.tensor_model_parallel_size
            if args.tokenizer_type == "NullTokenizer":
                vocab = args.vocab_size + 1
            else:
                vocab = m["vocab"]
            padded = -(-vocab // multiple) * multiple
            with torch.device("meta"):
                model = GPTModel(
                    config=config,
                    transformer_layer_spec=get_gpt_layer_local_spec(normalization=args.normalization),
                    vocab_size=padded,
                    max_sequence_length=args.max_position_embeddings,
                    share_embeddings_and_output_weights=not args.untie_embeddings_and_output_weights,
                    position_embedding_type=args.position_embedding_type,
                )
            count = sum(p.numel() for p in model.parameters())
    except Exception as e:  # noqa: BLE001
        r.fail(f"{label}: building megatron-core's GPTModel fails: {type(e).__name__}: {e}")
        return
    extra = (padded - m["vocab"]) * m["hidden"] * (1 if m["tied_embeddings"] else 2)
    if count == m["params"]:
        r.ok(f"{label}: megatron-core's GPTModel has {count:,} parameters, kiln's count")
    elif count == m["params"] + extra:
        r.ok(
            f"{label}: megatron-core's GPTModel has {count:,} parameters: kiln's {m['params']:,} "
            f"and {padded - m['vocab']} padding rows of the vocabulary (K-E001)"
        )
    elif m["position"] not in ("rope", "learned") or (m["norm"] == "layernorm" and not m["bias"]):
        r.note(
            f"{label}: megatron-core's GPTModel has {count:,} parameters, kiln counts "
            f"{m['params']:,} for the declared architecture (K-E001 says what differs)"
        )
    else:
        r.fail(f"{label}: megatron-core's GPTModel has {count:,} parameters, kiln counts {m['params']:,}")


# --------------------------------------------------------------------------------------
# Kubernetes


def validate_kubernetes(directory, r):
    r.section(f"Kubernetes: {directory}")
    plan = load_plan(directory)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deepspeed", metavar="DIR")
    ap.add_argument("--torchtitan", metavar="DIR")
    ap.add_argument("--megatron", metavar="DIR")
    ap.add_argument("--kubernetes", metavar="DIR")
    a = ap.parse_args()
    if not any((a.deepspeed, a.torchtitan, a.megatron, a.kubernetes)):
        ap.error("name at least one emitted directory")
    r = Report()
    if a.deepspeed:
        validate_deepspeed(a.deepspeed, r)
    if a.torchtitan:
        validate_torchtitan(a.torchtitan, r)
    if a.megatron:
        validate_megatron(a.megatron, r)
    if a.kubernetes:
        validate_kubernetes(a.kubernetes, r)
    print()
    if r.failures:
        print(f"FAILED: {r.failures} problem(s)")
        return 1
    if r.skipped:
        print(f"INCOMPLETE: {r.skipped} engine(s) could not be loaded (reasons above)")
        return 3
    print("all emitted files validated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
