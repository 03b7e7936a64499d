//! The registry of diagnostic codes: each with its severity and the text of docs/diagnostics.md.

use crate::diagnostic::Severity;

/// One diagnostic code: what it checks, why it matters, and an example that triggers it.
#[derive(Debug, PartialEq, Eq)]
pub struct Code {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub what: &'static str,
    pub why: &'static str,
    pub example: &'static str,
}

macro_rules! codes {
    ($($ident:ident = $code:literal $name:literal $sev:ident
        what $what:literal why $why:literal example $example:literal;)*) => {
        $(pub const $ident: &Code = &Code {
            code: $code, name: $name, severity: Severity::$sev,
            what: $what, why: $why, example: $example,
        };)*
        /// Every code, in the order of docs/diagnostics.md.
        pub const ALL: &[&Code] = &[$($ident),*];
    };
}

codes! {
    SYNTAX = "K-P001" "syntax" Error
        what "The text is not a well-formed kiln file: a missing `}`, a stray character, a field without a value."
        why "Nothing else can be checked until the file parses."
        example "experiment e {\n  tokens = \n}";
    TOO_DEEP = "K-P002" "too-deep" Error
        what "Blocks, lists or parentheses nested more than 32 deep, or an expression with more than 256 operators."
        why "Real experiments nest four or five levels; deeper input is a mistake or an attack, and kiln refuses it instead of overflowing its stack."
        example "experiment e { x = ((((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))) }";
    UNKNOWN_UNIT = "K-U001" "unknown-unit" Error
        what "A quantity's suffix or unit is not one kiln knows (`8Q`, `80gb`)."
        why "A unit kiln guesses at is a silent factor-of-1000 error waiting to happen."
        example "model m { layers = 4, hidden = 8Q, ffn_hidden = 32, heads = 2, vocab = 100, seq_len = 16 }";
    UNIT_MISMATCH = "K-U002" "unit-mismatch" Error
        what "A value has the wrong unit for its field, or arithmetic mixes units (tokens + bytes)."
        why "Tokens are not bytes and FLOPs are not FLOP/s; engines that take bare numbers find this hours into a run, if at all."
        example "gpu g { arch = hopper, memory = 80, hbm_bandwidth = 3.35 TB/s }";
    NOT_A_WHOLE_NUMBER = "K-U003" "not-a-whole-number" Error
        what "A field that counts things (layers, heads, GPUs, steps) is given a fraction or a negative number."
        why "3.5 layers cannot be built; a silent rounding changes the experiment."
        example "model m { layers = 3.5, hidden = 64, ffn_hidden = 256, heads = 4, vocab = 100, seq_len = 16 }";
    OUT_OF_RANGE = "K-U004" "out-of-range" Error
        what "A value outside the range its field allows: ZeRO stage above 3, a percentage above 100 %, a parallel size of 0."
        why "Engines clamp or ignore such values without saying so."
        example "experiment e { … parallel { zero = 4 } }";
    COUNT_TOO_LARGE = "K-U005" "count-too-large" Error
        what "A count that kiln derives from the experiment is larger than a plan can hold: optimizer steps (tokens / batch) or sequences per batch above 2^53, a model above 2^53 parameters, more than 2^20 GPUs, more than 100,000 pipeline chunks (pipeline × virtual stages), more than 2^32 − 1 layers."
        why "Steps and sizes are whole numbers in the plan and the engines; past these limits they would round, wrap or saturate silently (a 1e30-token budget once planned 18,446,744,073,709,551,615 steps), and no run is within orders of magnitude of them."
        example "experiment e { tokens = 1e30, batch = 4M tokens, … }";
    IMPORT_NOT_FOUND = "K-I001" "import-not-found" Error
        what "An import names a module, declaration or file that does not exist."
        why "A preset that silently fails to load would leave the experiment without its model or GPU."
        example "import std.models.llama4_8b";
    IMPORT_CYCLE = "K-I002" "import-cycle" Error
        what "Files import each other in a cycle."
        why "A cycle has no order in which the files can be read; the diagnostic names every file in it."
        example "# a.kiln\nimport \"b.kiln\"\n# b.kiln\nimport \"a.kiln\"";
    IMPORT_ESCAPES = "K-I003" "import-escapes-project" Error
        what "An import reaches outside the project of the importing file (the nearest directory above it with a `kiln.toml` or `.git`), by its path or through a symbolic link inside the project."
        why "An experiment must build the same way on every machine that has the project; files outside it are not part of what is reviewed and versioned."
        example "import \"../../../etc/cluster.kiln\"";
    DUPLICATE_DECLARATION = "K-I004" "duplicate-declaration" Error
        what "Two declarations visible in one file have the same name (declared twice, or declared and imported)."
        why "Which one a reference means would depend on import order."
        example "model m { … }\nmodel m { … }";
    IMPORT_TOO_DEEP = "K-I005" "import-too-deep" Error
        what "Imports nested more than 64 files deep (a file that imports a file that imports a file …)."
        why "Real projects import one or two levels; a chain this deep is generated or a mistake, and kiln reports it rather than stopping to load in silence."
        example "# f0.kiln imports f1.kiln, which imports f2.kiln, … f70.kiln";
    UNREADABLE_FILE = "K-I006" "unreadable-file" Error
        what "An imported file that kiln will not read: not a regular file (a directory, a FIFO, a device), larger than 16 MiB, or not UTF-8 (the message names the first bad byte); an entry file that is not UTF-8."
        why "Reading a FIFO blocks forever and a device such as /dev/zero never ends; kiln looks at what a path is before opening it, and reads text only."
        example "import \"pipe.kiln\"  # a FIFO made with mkfifo";
    SOURCE_ESCAPES = "K-I007" "source-escapes-project" Error
        what "A relative `path` of a data source that reaches outside the project (the nearest directory above the experiment with a `kiln.toml` or `.git`), by `..` or through a symbolic link."
        why "Relative source paths are read from the project root wherever the run happens; one that leaves the project reads whatever happens to be there on that machine. Data that lives elsewhere is declared with an absolute path."
        example "source web { path = \"../../home/me/web.jsonl\" }";
    UNKNOWN_KIND = "K-R001" "unknown-kind" Error
        what "A declaration or named entry of a kind kiln does not have (`modle m { … }`, `sorce web { … }`)."
        why "An unknown kind is almost always a typo; ignoring it would drop a whole block of the experiment."
        example "modle m { layers = 2 }";
    UNKNOWN_FIELD = "K-R002" "unknown-field" Error
        what "A field that the declaration kind does not have, including an override of a field the preset's kind does not have."
        why "Silently ignored keys are the most common configuration bug in the engines people run today."
        example "model m { layers = 2, kv_head = 2, … }";
    DUPLICATE_FIELD = "K-R003" "duplicate-field" Error
        what "The same field set twice in one block."
        why "Which value wins would be an accident of order."
        example "model m { layers = 2, layers = 4, … }";
    MISSING_FIELD = "K-R004" "missing-field" Error
        what "A required field is missing."
        why "kiln does not invent a model shape, a token budget or a cluster."
        example "model m { layers = 2 }";
    UNKNOWN_NAME = "K-R005" "unknown-name" Error
        what "A name that is neither a preset in scope, an option of the field, nor a field reachable by that path."
        why "A misspelt preset or reference must not turn into a string or a zero."
        example "experiment e { model = llama3_8 … }";
    WRONG_KIND = "K-R006" "wrong-kind" Error
        what "A preset of the wrong kind for its field (a GPU where a model is expected)."
        why "Each field takes one kind of preset; anything else is a mix-up."
        example "experiment e { model = h100_sxm … }";
    WRONG_TYPE = "K-R007" "wrong-type" Error
        what "A value of the wrong shape: a string where a number is expected, a list where a block is expected."
        why "Types are checked before any number is derived from them."
        example "model m { layers = \"32\", … }";
    DERIVED_FIELD = "K-R008" "derived-field" Error
        what "A value is given for a field that kiln derives (`params`, `world`)."
        why "A derived number that is also declared can disagree with itself; declare the inputs instead."
        example "model m { params = 8B, … }";
    FIELD_WITHOUT_EFFECT = "K-R009" "field-without-effect" Warning
        what "A field is declared that the rest of its declaration makes meaningless: `rope_base` or `rotary_fraction` with `position` other than `rope`."
        why "Nothing written is silently ignored: a RoPE base on a model with learned positions is either a leftover or a sign that `position = rope` was meant."
        example "model m { position = learned, rope_base = 500000 }";
    PUBLISHED_PARAMS = "K-R010" "published-params" Warning
        what "A model's `published_params` (the count its paper states) differs by more than 1 % from the parameters kiln counts from its shape."
        why "Papers round (GPT-3's 6.7B is 6.66B by its own table's shape), but more than 1 % means a field of the shape is wrong (a vocabulary, an FFN width, tied embeddings) or the count is another model's; every later number (FLOPs, memory, compute-optimal tokens) follows the shape."
        example "model m { layers = 32, hidden = 4096, …, published_params = 8B } whose shape counts 6.7B";
    ROTARY_DIMS = "K-R011" "rotary-dims" Error
        what "A `rotary_fraction` whose share of `head_dim` is not a whole, even number of dimensions (at least 2)."
        why "Rotary embeddings rotate pairs of dimensions; the engines truncate `rotary_fraction × head_dim` to an integer (Megatron-LM's `int(kv_channels × rotary_percent)`), so an odd or fractional count would train another model than the one kiln counted."
        example "model m { head_dim = 96, rotary_fraction = 0.3, … } rotates 28.8 dimensions";
    DERIVATION_CYCLE = "K-D001" "derivation-cycle" Error
        what "Fields that depend on each other in a cycle, through references or `auto`."
        why "There is no order in which to compute them; the diagnostic names every field in the cycle."
        example "experiment e { tokens = phase.main.tokens, phase main { tokens = tokens } … }";
    CANNOT_DERIVE = "K-D002" "cannot-derive" Error
        what "An `auto` value that kiln cannot derive, or arithmetic that cannot be evaluated (division by zero)."
        why "kiln says how it derives each value; where it cannot, it asks for the value instead of guessing."
        example "experiment e { tokens = auto, objective = fixed … }";
    LAYOUT_SEARCH = "K-D003" "layout-search" Error
        what "A `parallel` block with sizes written `auto` for which no layout of the cluster, keeping the sizes that are written, passes the layout checks and fits in memory."
        why "kiln fills `auto` sizes with the fastest layout that fits; where none fits it says so rather than pick one that fails on the cluster."
        example "parallel { tensor = auto, micro_batch = 64 } on one 40 GB GPU";
    MIX_UNKNOWN_SOURCE = "K-C001" "mix-unknown-source" Error
        what "A data mix names a source that the experiment does not declare."
        why "A weight on a missing source either crashes the data loader or is silently renormalised away."
        example "phase main { mix { web = 50%, cod = 50% } }";
    MIX_SUM = "K-C002" "mix-sum" Error
        what "The weights of a data mix do not add up to 100 %."
        why "Engines renormalise silently, so the mix that trains is not the mix that was declared."
        example "phase main { mix { web = 60%, code = 30% } }";
    PHASE_TOKENS_SUM = "K-C003" "phase-tokens-sum" Error
        what "The phases' tokens do not add up to the experiment's `tokens`, or there is not exactly room for the phase marked `auto`."
        why "The token budget is the experiment; a phase that over- or under-runs changes the compute and the schedule."
        example "tokens = 100B, phase a { tokens = 60B }, phase b { tokens = 50B }";
    WORLD_SIZE = "K-C004" "world-size" Error
        what "The cluster's GPUs are not data × tensor × pipeline × context."
        why "Launchers fail at start-up, or leave GPUs idle, when the parallel sizes do not multiply to the world."
        example "cluster 2 nodes × 8 GPUs, parallel { tensor = 8, pipeline = 3 }";
    HEADS_TENSOR = "K-C005" "heads-tensor" Error
        what "The attention heads are not divisible by the tensor-parallel size."
        why "Megatron-style tensor parallelism splits attention by heads; each rank must get whole heads."
        example "model with 12 heads, parallel { tensor = 8 }";
    KV_HEADS_TENSOR = "K-C006" "kv-heads-tensor" Error
        what "The key/value heads (grouped-query attention) are not divisible by the tensor-parallel size."
        why "Each tensor-parallel rank holds whole key/value groups; Megatron-LM refuses to start otherwise."
        example "model with kv_heads = 8, parallel { tensor = 16 }";
    LAYERS_PIPELINE = "K-C007" "layers-pipeline" Error
        what "The layers do not divide evenly over pipeline stages × virtual stages."
        why "Uneven stages make the slowest stage set the pace of every step; interleaved schedules require equal chunks."
        example "126 layers, parallel { pipeline = 16 } → 7.875 layers per stage";
    BATCH_ARITHMETIC = "K-C008" "batch-arithmetic" Error
        what "The global batch is not micro_batch × data × accumulation sequences with accumulation ≥ 1, or the batch is not a whole number of sequences, or an interleaved pipeline (virtual_stages > 1) has fewer micro-batches than stages."
        why "Engines round the batch or refuse to start; either way the declared batch is not what trains."
        example "batch = 1M tokens, seq_len = 4096 → 244.14 sequences";
    TENSOR_ACROSS_NODES = "K-C009" "tensor-across-nodes" Warning
        what "A tensor-parallel group larger than the GPUs in one node."
        why "Tensor parallelism all-reduces every layer; across the network instead of NVLink it is an order of magnitude slower (kiln times it on the network link). It runs, so it is a warning: the Ultra-Scale Playbook measured tensor = 16 and 32 across 8-GPU nodes."
        example "parallel { tensor = 16 } on 8-GPU nodes";
    TOKENIZER_VOCAB = "K-C010" "tokenizer-vocab" Error
        what "The tokenizer's vocabulary is larger than the model's embedding table."
        why "Token ids beyond the table index out of bounds on the first batch that contains them."
        example "tokenizer = bpe { vocab = 128256 } with a model of vocab 32000";
    VOCAB_PADDING = "K-C011" "vocab-padding" Warning
        what "The model's vocabulary is larger than the tokenizer's by more than the padding engines add (128 × tensor)."
        why "Unused embedding rows cost memory and FLOPs and usually mean the wrong tokenizer or model."
        example "tokenizer = bpe { vocab = 32000 } with a model of vocab 128256";
    ANNEAL_NOT_ZERO = "K-C012" "anneal-not-zero" Error
        what "An anneal phase whose learning rate does not end at 0."
        why "Annealing to zero is what the phase is for; ending above it leaves loss on the table."
        example "phase anneal { lr = linear { to = 1e-5 } }";
    SOURCE_UNUSED = "K-C013" "source-unused" Warning
        what "A declared data source that no phase's mix uses."
        why "Its dedup, filtering and tokenisation would run for nothing; usually a mix entry is missing."
        example "source books { … } with no phase naming `books`";
    NO_PHASE = "K-C014" "no-phase" Error
        what "An experiment without any phase (a phase without its mix or learning rate is K-R004)."
        why "Training needs at least one phase with its data mix and schedule."
        example "experiment e { model = tiny, tokens = 1B, … }  # no phase";
    TOKENIZER_TOO_SMALL = "K-C015" "tokenizer-too-small" Error
        what "A byte-level BPE tokenizer of 256 tokens or fewer."
        why "Byte-level BPE starts from the 256 byte values and adds merges; with no room beyond them the tokenizer step fails hours into the data pipeline."
        example "tokenizer = bpe { vocab = 256 }";
    RECOMPUTE_LAYERS = "K-C016" "recompute-layers" Error
        what "`recompute_layers` without `recompute = full`, or 0 layers."
        why "It says how many layers of each stage full recompute covers (Megatron-LM's --recompute-num-layers); under another recompute mode it would be silently ignored."
        example "parallel { recompute = selective, recompute_layers = 4 }";
    PIPELINE_UNDERFILLED = "K-C017" "pipeline-underfilled" Warning
        what "Fewer micro-batches per step than pipeline stages (without interleaving)."
        why "The 1F1B schedule runs, but most stages idle: the bubble is (p − 1)/(m + p − 1) of the step, which kiln's step time includes. It is a warning because such runs train (the Ultra-Scale Playbook measured pipeline = 2 with one micro-batch); Megatron-LM's interleaved schedule refuses them, so with virtual stages it stays K-C008."
        example "parallel { pipeline = 2, micro_batch = 2 } with batch = micro_batch × data sequences";
    ACTIVATION_OFFLOAD = "K-C018" "activation-offload" Error
        what "`offload_layers` where the engine cannot offload activations (kiln models Megatron-LM's and NeMo's CPU offloading), or against its conditions: fewer layers than the model has, no pipeline parallelism, no recompute; and the GPU must declare `host_bandwidth`."
        why "Megatron-LM refuses the others at start-up (TransformerConfig.__post_init__), and an engine without offloading would silently keep the activations on the GPU that kiln counted as moved."
        example "parallel { pipeline = 4, offload_layers = 8 } with engine = megatron";
    COMPUTE_BUDGET = "K-C019" "compute-budget" Error
        what "`compute` is declared and the experiment's own 6·N·D differs from it by more than 1 % (under `chinchilla` and `fixed`; under `inference_aware` the budget names the loss to reach, and training spends more)."
        why "A budget that the model and tokens do not spend is either a stale number or a mistake in one of them; `tokens = auto` (or `model = auto`) spends it exactly."
        example "compute = 1e23 FLOPs, model = llama3_8b, tokens = 15T";
    JOB_TIME_LIMIT = "K-C020" "job-time-limit" Error
        what "The cluster's `max_job_time` is shorter than a minute (Slurm's time limits are whole minutes), or shorter than two of the experiment's predicted optimizer steps: a job cannot finish the step in progress and checkpoint before its limit."
        why "Each job of a long training step is warned before its limit, finishes its step, checkpoints and requeues itself; a job that cannot do that is killed without a checkpoint, again and again, and the run never advances."
        example "cluster = dgx_h100_pod { nodes = 8, max_job_time = 30s }";
    JOB_TIME_CHECKPOINTS = "K-C021" "job-time-checkpoints" Warning
        what "The cluster's `max_job_time` is under 5 minutes, or the experiment's checkpoints (`checkpoint.every` × the predicted step time) are further apart than a job."
        why "Short jobs spend much of their time starting, loading and checkpointing. A job that ends without its warning (a node failure, a missed signal) resumes from the last periodic checkpoint, and torchtitan, which cannot checkpoint on a signal, resumes only from those: checkpoints further apart than a job lose a whole job's work, or make no progress at all."
        example "cluster = dgx_h100_pod { nodes = 8, max_job_time = 2min }";
    UNKNOWN_ENTRY = "K-C022" "unknown-entry" Error
        what "A field that names an entry of the experiment (`classifier.scorer`, `likelihood_ratio.general`, a scorer's `source`, `kl.reference`) names none that is declared."
        why "The plan's steps would read a scorer or a source that does not exist; the help suggests the nearest declared name."
        example "quality { classifier { scorer = reff, keep = 70% } } with scorer ref { … }";
    QUALITY_MODEL = "K-C023" "quality-model" Error
        what "The model-based filter or its scorer is incomplete or contradictory: a classifier without `scorer`, with both or neither of `keep` and `threshold`; a scorer with none or several of `model` (trained here, with `source`, `tokens` and `lr`), `hf` and `checkpoint`; a trained scorer whose learning rate is `linear` without `from`, or whose sequence length does not divide the batch; a likelihood ratio of a scorer against itself; a KL rule with both `max` and `max_nats`."
        why "Each of these leaves a step of the chain (train the scorer, score the sample, train the classifier, filter) without what it needs, which the runtime would find only after the earlier steps have run."
        example "quality { classifier { keep = 70% } }  # no scorer";
    BATCH_RAMP = "K-C024" "batch-ramp" Error
        what "A `batch = ramp { … }` that does not describe one ramp: both a linear ramp's fields (`from`, `over`, `increment`) and `stages`, or neither; a linear ramp without `from` or `over`, starting at or above `to`, lasting less than a sequence, or whose `to` − `from` is not a whole number of increments (the help gives the nearest increment that is) or has more than 65,536 of them; a staged ramp without stages or whose stages do not end in increasing order, each at least a sequence after the one before."
        why "The plan's optimizer steps, the learning rate under the ramp and the engines' batch schedules are all computed from the ramp; one that cannot be read one way would silently train a different batch than the paper it reproduces."
        example "batch = ramp { from = 32Ki tokens, to = 3Mi tokens, over = 12B tokens, increment = 48Ki tokens }";
    RAMP_BATCH_SPLIT = "K-C025" "ramp-batch-split" Error
        what "A batch of the ramp (a stage's batch, a linear ramp's first batch or its increment) is not a whole number of sequences, or does not split into micro_batch × data sequences; or, with an interleaved pipeline, a batch runs fewer micro-batches than pipeline stages."
        why "Every step of a ramp must split across the data-parallel ranks into whole micro-batches, as the full batch must (K-C008): Megatron-LM asserts it at the step where the batch changes (`StepBatchsizeNumMicroBatchesCalculator.update`), hours into the run; the help gives the nearest batch that splits."
        example "batch = ramp { from = 24Ki tokens, to = 3Mi tokens, over = 12B tokens } with 16 data-parallel ranks";
    UNDER_TRAINED = "K-S001" "under-trained" Warning
        what "Fewer tokens per parameter than the objective's optimum, by enough to cost more than 0.01 nats of predicted loss: against the compute-optimal N and D of the chosen law (Besiroglu et al. 2024's refit of Hoffmann et al. 2022 by default, about 20 tokens per parameter) for `chinchilla` and `fixed`, against Sardana et al.'s optimum for `inference_aware`."
        why "For the same compute, a smaller model on more tokens reaches a lower loss; the help gives that N and D and the loss difference."
        example "GPT-3 175B on 300B tokens: 1.7 tokens per parameter";
    OVER_TRAINED = "K-S002" "over-trained" Advice
        what "More tokens per parameter than the compute-optimal ratio, by enough to cost more than 0.01 nats, without an inference-aware objective."
        why "Training past the compute-optimal point pays off only when the model then serves many tokens; `objective = inference_aware { serve_tokens = … }` says so and lets kiln check it."
        example "Llama 3 8B on 15T tokens with objective = fixed";
    REPEATED_DATA = "K-S003" "repeated-data" Warning
        what "A source is drawn more times over than its `max_epochs` (4 by default): the phases' tokens × its mix weights against its `unique_tokens`."
        why "Muennighoff et al. 2023 (Scaling Data-Constrained Language Models) find up to about 4 epochs of repeated data nearly as good as new data, and quickly diminishing returns beyond."
        example "source wiki { unique_tokens = 3B } drawn for 20B tokens";
    MEMORY = "K-M001" "out-of-memory" Error
        what "The most loaded GPU needs more memory than it has: model states as its engine keeps them, activations of the micro-batches in flight, logits, workspace, allocator fragmentation and the runtime (CUDA context, NCCL)."
        why "An out-of-memory error arrives after the job has queued, loaded and compiled; kiln gives the breakdown and the cheapest changes that fit, each with its step-time cost."
        example "Llama 3 405B with tensor = 8, pipeline = 16 and no sequence parallelism";
    MEMORY_HEADROOM = "K-M002" "memory-headroom" Warning
        what "The most loaded GPU fits, but by less than the error band kiln's memory model measured against published peaks (docs/validation.md)."
        why "Within the band, \"fits\" is a guess: measured runs of such layouts both trained and ran out of memory. The warning gives the cheapest changes that leave the band free."
        example "a layout that needs 78 GB of an 80 GB GPU";
    PRECISION_HARDWARE = "K-H001" "precision-hardware" Error
        what "A precision the GPU cannot run: bf16 needs Ampere or newer (or CDNA3), fp8 needs Hopper or newer (or CDNA3)."
        why "The kernels do not exist on older GPUs; frameworks fall back to slow paths or fail at the first matmul."
        example "precision = bf16_mixed on V100";
    NO_PEAK = "K-H002" "no-peak" Error
        what "The GPU preset has no peak FLOP/s for the run's precision, so kiln cannot predict time, MFU or cost."
        why "kiln will not guess a peak; declare it in the GPU (`peak_bf16 = … TFLOP/s`)."
        example "gpu g { arch = hopper, memory = 80GB, hbm_bandwidth = 3.35 TB/s } with precision = bf16_mixed";
    FP16_LOSS_SCALING = "K-H003" "fp16-loss-scaling" Advice
        what "fp16 mixed precision: its largest value is 65504 and gradients below about 6e-8 flush to zero, so the run needs dynamic loss scaling (kiln's runtime does it; other engines need it enabled)."
        why "Without loss scaling fp16 gradients underflow and the loss stalls or diverges; bf16 has fp32's range and needs none."
        example "precision = fp16_mixed";
    NO_TOKENIZER = "K-L001" "no-tokenizer" Error
        what "`kiln plan`, `kiln emit` and `kiln run` need a tokenizer to encode the sources, and the experiment declares none."
        why "The data steps train and apply a tokenizer; without one there is nothing to encode the text with."
        example "experiment e { … }  # no tokenizer = bpe { vocab = … }";
    CANNOT_EXPRESS = "K-E001" "target-cannot-express" Warning
        what "`kiln emit` for a target (Megatron-LM, torchtitan, DeepSpeed, Kubernetes) that has no way to express something the experiment declares; the message says what and what the emitted file does instead."
        why "Engines silently ignore or approximate what they do not support; kiln says so instead of dropping it."
        example "kiln emit --target deepspeed for an experiment with tensor = 8";
    ENGINE_REFUSES = "K-E002" "engine-refuses" Error
        what "The experiment's engine (`engine = …`, or `kiln check --target …` and `kiln emit --target …`) refuses the layout at start-up: DeepSpeed's pipeline with ZeRO-2/3, Megatron-LM's interleaved schedule over micro-batches that are not a multiple of the pipeline size, context parallelism whose 2 × context chunks do not divide the sequence (Megatron-LM, torchtitan), tensor-parallel overlap without sequence parallelism (Megatron-LM). The note cites the engine's code the rule mirrors (docs/engines.md lists them all)."
        why "The engine stops with an assertion after the job has queued and the nodes have started; kiln says it before anything is emitted, with the fix."
        example "engine = deepspeed, parallel { pipeline = 8, zero = 3 }";
    ENGINE_OVERRIDES = "K-E003" "engine-overrides" Warning
        what "The engine silently changes a declared value at start-up (Megatron-LM turns sequence parallelism off at tensor = 1)."
        why "What runs is then not what was declared; kiln says which value the engine uses instead."
        example "engine = megatron, parallel { tensor = 1, sequence_parallel = true }";
    UNKNOWN_ALLOW = "K-A001" "unknown-allow" Warning
        what "`allow` or `--allow` names a code that does not exist, or one that is an error (errors cannot be silenced)."
        why "A silencing that does nothing hides nothing, which is worth knowing."
        example "allow = [\"K-C999\"]";
}

/// Looks a code up by its code (`K-C002`) or its name (`mix-sum`).
pub fn find(code_or_name: &str) -> Option<&'static Code> {
    ALL.iter()
        .copied()
        .find(|c| c.code == code_or_name || c.name == code_or_name)
}

/// Renders docs/diagnostics.md from the registry.
pub fn docs_markdown() -> String {
    let mut out = String::from(
        "# kiln diagnostics\n\n\
         Generated from `compiler/src/codes.rs` by `kiln codes --markdown`; a test keeps it in step.\n\
         Warnings and advice can be silenced by code or name: `allow = [\"K-C013\"]` in the\n\
         experiment, or `kiln check --allow K-C013`. Errors cannot be silenced.\n\n\
         | code | name | severity |\n| --- | --- | --- |\n",
    );
    for c in ALL {
        out += &format!(
            "| [{}](#{}) | {} | {} |\n",
            c.code,
            c.code.to_lowercase(),
            c.name,
            c.severity.word()
        );
    }
    for c in ALL {
        out += &format!(
            "\n## {}\n\n`{}` · {}\n\n**What it checks.** {}\n\n**Why it matters.** {}\n\n**Example** (in short; the whole file is a case in tests/cases).\n\n```text\n{}\n```\n",
            c.code,
            c.name,
            c.severity.word(),
            c.what,
            c.why,
            c.example
        );
    }
    out
}
