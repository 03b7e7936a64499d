//! Measures this machine's matmul FLOP/s (fp32, bf16, fp16) and memory bandwidth with libtorch.
//!
//! Each matmul rate is the median of repeats at several sizes; bandwidth is a large tensor
//! copy. Two more measurements let kiln predict small models, whose matrices are far below
//! the sizes that reach the peak:
//! - the half-performance dimension n½ (Hockney & Jesshope, "Parallel Computers 2", 1988,
//!   Sec. 1.3.3: the vector length at which a pipeline reaches half its asymptotic rate),
//!   fitted here to training-shaped fp32 matmuls, [`TRAINING_MATMUL_ROWS`] rows (tokens) of
//!   width d times a d×d weight, at the widths [`TRAINING_MATMUL_DIMS`]: with r(d) = r∞ ·
//!   d / (d + n½), 1/r is linear in 1/d, 1/r = 1/r∞ + (n½/r∞)·(1/d), so a least-squares
//!   line through (1/d, 1/r) gives r∞ (1 / intercept) and n½ (slope / intercept);
//! - the runtime's own resident memory: libtorch's code pages and allocator pools after one
//!   optimizer step of a negligible decoder (20,640 parameters, one 16-token sequence), which
//!   touches every kernel a training step runs; a run adds its tensors to it.
//!
//! A matmul of two n×n matrices is 2n³ FLOPs (n³ multiply-adds). Bandwidth counts the bytes
//! read and written by a copy (2 × its size) over its time. Each measurement is timed after
//! one untimed warm-up run, on a device synchronised before and after. The serialised
//! [`Calibration`] is what `kiln calibrate` reads from `kiln-worker calibrate` (its keys:
//! `date`, `threads`, `memory_bytes`, `memory_bytes_per_s`, `matmul_*_flops_per_s`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{catch_torch, TrainError};
use crate::model::Model;
use crate::spec::{ModelSpec, OptimizerSpec, Precision};
use crate::trainer::Trainer;

/// Square matmul sizes measured by default (the ones the brief of `kiln calibrate` names).
pub const DEFAULT_MATMUL_SIZES: [i64; 3] = [1024, 2048, 4096];
/// Rows (tokens) of the training-shaped matmuls: one micro-batch of the tiny demo (32 × 128).
pub const TRAINING_MATMUL_ROWS: i64 = 4096;
/// Widths d of the training-shaped matmuls `[rows, d] × [d, d]`.
pub const TRAINING_MATMUL_DIMS: [i64; 5] = [64, 128, 256, 512, 1024];
/// Timed repeats of each training-shaped matmul. Small matmuls are bimodal at first (the
/// allocator's page faults on fresh outputs, until glibc's mmap threshold adapts): the median
/// of many repeats is the steady state a training run sees.
pub const TRAINING_MATMUL_REPEATS: usize = 25;
/// Timed repeats per measurement; the median is kept.
pub const DEFAULT_REPEATS: usize = 5;
/// Bytes of the copied tensor: 256 MiB, far beyond any CPU's last-level cache (assumption:
/// the largest server L3 caches are a few hundred MiB only on multi-socket totals).
pub const DEFAULT_COPY_BYTES: u64 = 256 << 20;
/// A size whose single matmul takes longer than this is the last one measured for its
/// type (the next, 8× the work, would take minutes on a slow path such as fp16 without
/// hardware support).
pub const MAX_MATMUL_SECONDS: f64 = 2.0;

/// Training-shaped bf16 GEMMs measured on a GPU, (m, n, k) = (tokens, output width, input
/// width): the QKV, MLP-in and MLP-out shapes of 2K- to 8K-wide models at 4K to 16K tokens
/// per micro-batch. The best rate is the arch's achievable ceiling for `kiln explain`
/// (`matmul_ceiling`), as Bekman's mamf-finder measures it over shapes.
pub const GPU_GEMM_SHAPES: [(i64, i64, i64); 12] = [
    (4096, 6144, 2048),
    (4096, 16384, 2048),
    (4096, 2048, 8192),
    (8192, 12288, 4096),
    (8192, 28672, 4096),
    (8192, 4096, 14336),
    (16384, 12288, 4096),
    (16384, 28672, 4096),
    (16384, 4096, 14336),
    (8192, 24576, 8192),
    (8192, 57344, 8192),
    (8192, 8192, 28672),
];

/// Causal attention measured on a GPU (batch, heads, sequence, head dimension), bf16 through
/// libtorch's scaled_dot_product_attention (its flash backend on NVIDIA GPUs), forward and
/// backward: the rate `kiln explain` uses for the attention core (`attention_efficiency`).
pub const GPU_ATTENTION_SHAPES: [(i64, i64, i64, i64); 3] =
    [(4, 32, 2048, 128), (2, 32, 4096, 128), (1, 32, 8192, 128)];

/// What to measure.
#[derive(Clone, Debug)]
pub struct CalibrationConfig {
    pub device: Device,
    pub sizes: Vec<i64>,
    pub repeats: usize,
    pub copy_bytes: u64,
    /// Training-shaped bf16 GEMMs (m, n, k) to measure; empty on a CPU by default.
    pub gemm_shapes: Vec<(i64, i64, i64)>,
    /// Causal attention shapes (batch, heads, sequence, head dimension) to measure.
    pub attention_shapes: Vec<(i64, i64, i64, i64)>,
}

impl CalibrationConfig {
    /// What `kiln calibrate --device cuda` measures: the defaults, the training-shaped GEMM
    /// grid and causal attention, on GPU `index`, with a copy of 1 GiB (beyond any GPU's L2).
    pub fn gpu(index: usize) -> CalibrationConfig {
        CalibrationConfig {
            device: Device::Cuda(index),
            sizes: vec![2048, 4096, 8192],
            repeats: 10,
            copy_bytes: 1 << 30,
            gemm_shapes: GPU_GEMM_SHAPES.to_vec(),
            attention_shapes: GPU_ATTENTION_SHAPES.to_vec(),
        }
    }
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        CalibrationConfig {
            device: Device::Cpu,
            sizes: DEFAULT_MATMUL_SIZES.to_vec(),
            repeats: DEFAULT_REPEATS,
            copy_bytes: DEFAULT_COPY_BYTES,
            gemm_shapes: Vec::new(),
            attention_shapes: Vec::new(),
        }
    }
}

/// One matmul measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatmulRate {
    /// `fp32`, `bf16` or `fp16`.
    pub dtype: String,
    pub size: i64,
    /// Median over the repeats.
    pub flops_per_s: f64,
    pub seconds: Vec<f64>,
}

/// One training-shaped GEMM measurement (bf16).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GemmRate {
    pub m: i64,
    pub n: i64,
    pub k: i64,
    /// Median over the repeats: 2mnk / seconds.
    pub flops_per_s: f64,
}

/// One causal attention measurement (bf16, forward + backward).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionRate {
    pub batch: i64,
    pub heads: i64,
    pub seq: i64,
    pub head_dim: i64,
    /// FLOPs as FlashAttention's benchmarks count them (the causal half of 4·b·h·s²·d
    /// forward, 2.5 times that backward) over the median seconds of forward + backward.
    pub flops_per_s: f64,
}

/// This machine, measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The UTC date of the measurement (YYYY-MM-DD).
    pub date: String,
    pub device: String,
    /// libtorch's intra-op threads during the measurement.
    pub threads: i64,
    /// Host memory (`MemTotal`).
    pub memory_bytes: u64,
    /// Median copy bandwidth, bytes read + written per second.
    pub memory_bytes_per_s: f64,
    /// The best median rate over the sizes, per type.
    pub matmul_fp32_flops_per_s: f64,
    pub matmul_bf16_flops_per_s: f64,
    pub matmul_fp16_flops_per_s: f64,
    /// Every size measured.
    pub matmuls: Vec<MatmulRate>,
    pub copy_bytes: u64,
    /// The fitted half-performance width n½ of fp32 training-shaped matmuls (module doc).
    pub matmul_half_dim: f64,
    /// The asymptotic fp32 rate of the same fit.
    pub matmul_fit_flops_per_s: f64,
    /// The training-shaped matmuls measured, `size` being the width d.
    pub training_matmuls: Vec<MatmulRate>,
    /// Resident memory of this process after libtorch's first operations, before any
    /// large tensor (VmRSS).
    pub runtime_bytes: u64,
    /// Training-shaped bf16 GEMMs (empty where not asked for).
    #[serde(default)]
    pub gemms: Vec<GemmRate>,
    /// The best of them (0 where none was measured).
    #[serde(default)]
    pub gemm_best_flops_per_s: f64,
    /// Causal attention, forward + backward (empty where not asked for).
    #[serde(default)]
    pub attention: Vec<AttentionRate>,
    /// The rate at the longest sequence measured (0 where none was).
    #[serde(default)]
    pub attention_flops_per_s: f64,
}

impl Calibration {
    /// The measured matmul rate for a precision's compute type.
    pub fn matmul_flops_per_s(&self, precision: Precision) -> f64 {
        match precision {
            Precision::Fp32 => self.matmul_fp32_flops_per_s,
            Precision::Bf16Mixed => self.matmul_bf16_flops_per_s,
            Precision::Fp16Mixed | Precision::Fp8Mixed => self.matmul_fp16_flops_per_s,
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Seconds of each of `repeats` runs of `f`, after one warm-up.
fn time_runs(device: Device, repeats: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    synchronize(device);
    (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            synchronize(device);
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// Measures this machine (see the module doc).
pub fn calibrate(config: &CalibrationConfig) -> Result<Calibration, TrainError> {
    if let Device::Cuda(i) = config.device {
        let count = tch::Cuda::device_count();
        if i as i64 >= count {
            return Err(TrainError::Unsupported(format!(
                "no CUDA device {i}: libtorch sees {count} (a GPU build of torch and a driver \
                 are needed; on a CPU, calibrate without --device)"
            )));
        }
    }
    catch_torch(|| measure(config))
}

fn measure(config: &CalibrationConfig) -> Result<Calibration, TrainError> {
    let device = config.device;
    touch_training_kernels(device)?;
    let runtime_bytes = crate::metrics::rss_bytes().unwrap_or(0);
    let mut training_matmuls = Vec::new();
    for d in TRAINING_MATMUL_DIMS {
        let x = Tensor::f_randn([TRAINING_MATMUL_ROWS, d], (Kind::Float, device))?;
        let w = Tensor::f_randn([d, d], (Kind::Float, device))?;
        let mut failed = None;
        let mut seconds = time_runs(device, TRAINING_MATMUL_REPEATS, || {
            if let Err(e) = x.f_matmul(&w) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        let m = median(&mut seconds);
        training_matmuls.push(MatmulRate {
            dtype: "fp32".into(),
            size: d,
            flops_per_s: 2.0 * (TRAINING_MATMUL_ROWS * d * d) as f64 / m,
            seconds,
        });
    }
    let (matmul_fit_flops_per_s, matmul_half_dim) = fit_half_dim(&training_matmuls);
    let mut matmuls = Vec::new();
    for (kind, name) in [
        (Kind::Float, "fp32"),
        (Kind::BFloat16, "bf16"),
        (Kind::Half, "fp16"),
    ] {
        for &n in &config.sizes {
            if n <= 0 {
                return Err(TrainError::Plan(format!(
                    "matmul size {n} must be positive"
                )));
            }
            let a = Tensor::f_randn([n, n], (kind, device))?;
            let b = Tensor::f_randn([n, n], (kind, device))?;
            let mut failed = None;
            let mut seconds = time_runs(device, config.repeats, || {
                if let Err(e) = a.f_matmul(&b) {
                    failed = Some(e);
                }
            });
            if let Some(e) = failed {
                return Err(e.into());
            }
            let m = median(&mut seconds.clone());
            let slow = seconds.iter().cloned().fold(0.0, f64::max) > MAX_MATMUL_SECONDS;
            seconds.sort_by(|x, y| x.total_cmp(y));
            matmuls.push(MatmulRate {
                dtype: name.into(),
                size: n,
                flops_per_s: 2.0 * (n as f64).powi(3) / m,
                seconds,
            });
            if slow {
                break;
            }
        }
    }
    let best = |name: &str| {
        matmuls
            .iter()
            .filter(|r| r.dtype == name)
            .map(|r| r.flops_per_s)
            .fold(0.0, f64::max)
    };
    let elements = (config.copy_bytes / 4).max(1) as i64;
    let src = Tensor::f_ones([elements], (Kind::Float, device))?;
    let mut dst = Tensor::f_empty([elements], (Kind::Float, device))?;
    let mut failed = None;
    let mut copies = time_runs(device, config.repeats, || {
        if let Err(e) = dst.f_copy_(&src) {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    let copy_bytes = elements as u64 * 4;
    drop((src, dst));
    let gemms = config
        .gemm_shapes
        .iter()
        .map(|&(m, n, k)| measure_gemm(device, m, n, k, config.repeats))
        .collect::<Result<Vec<_>, _>>()?;
    let attention = config
        .attention_shapes
        .iter()
        .map(|&(b, h, seq, d)| measure_attention(device, b, h, seq, d, config.repeats))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Calibration {
        date: utc_date(SystemTime::now()),
        device: match device {
            Device::Cpu => "cpu".into(),
            Device::Cuda(i) => format!("cuda:{i}"),
            other => format!("{other:?}").to_lowercase(),
        },
        threads: tch::get_num_threads() as i64,
        memory_bytes: mem_total_bytes().unwrap_or(0),
        memory_bytes_per_s: 2.0 * copy_bytes as f64 / median(&mut copies),
        matmul_fp32_flops_per_s: best("fp32"),
        matmul_bf16_flops_per_s: best("bf16"),
        matmul_fp16_flops_per_s: best("fp16"),
        matmuls,
        copy_bytes,
        matmul_half_dim,
        matmul_fit_flops_per_s,
        training_matmuls,
        runtime_bytes,
        gemm_best_flops_per_s: gemms.iter().map(|g| g.flops_per_s).fold(0.0, f64::max),
        gemms,
        attention_flops_per_s: attention
            .iter()
            .max_by_key(|a| a.seq)
            .map_or(0.0, |a| a.flops_per_s),
        attention,
    })
}

/// The median rate of one bf16 GEMM [m, k] × [k, n].
pub fn measure_gemm(
    device: Device,
    m: i64,
    n: i64,
    k: i64,
    repeats: usize,
) -> Result<GemmRate, TrainError> {
    if m <= 0 || n <= 0 || k <= 0 {
        return Err(TrainError::Plan(format!(
            "GEMM shape ({m}, {n}, {k}) must be positive"
        )));
    }
    let a = Tensor::f_randn([m, k], (Kind::BFloat16, device))?;
    let b = Tensor::f_randn([k, n], (Kind::BFloat16, device))?;
    let mut failed = None;
    let mut seconds = time_runs(device, repeats, || {
        if let Err(e) = a.f_matmul(&b) {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok(GemmRate {
        m,
        n,
        k,
        flops_per_s: 2.0 * (m * n * k) as f64 / median(&mut seconds),
    })
}

/// The median forward + backward rate of causal bf16 attention through
/// scaled_dot_product_attention, on [batch, heads, seq, head_dim] queries, keys and values.
pub fn measure_attention(
    device: Device,
    batch: i64,
    heads: i64,
    seq: i64,
    head_dim: i64,
    repeats: usize,
) -> Result<AttentionRate, TrainError> {
    if batch <= 0 || heads <= 0 || seq <= 0 || head_dim <= 0 {
        return Err(TrainError::Plan(format!(
            "attention shape ({batch}, {heads}, {seq}, {head_dim}) must be positive"
        )));
    }
    let shape = [batch, heads, seq, head_dim];
    let q = Tensor::f_randn(shape, (Kind::BFloat16, device))?.set_requires_grad(true);
    let k = Tensor::f_randn(shape, (Kind::BFloat16, device))?.set_requires_grad(true);
    let v = Tensor::f_randn(shape, (Kind::BFloat16, device))?.set_requires_grad(true);
    let grad = Tensor::f_randn(shape, (Kind::BFloat16, device))?;
    let mut failed = None;
    let mut seconds = time_runs(device, repeats, || {
        let run = || -> Result<(), tch::TchError> {
            let y = Tensor::f_scaled_dot_product_attention(
                &q,
                &k,
                &v,
                None::<Tensor>,
                0.0,
                true,
                None,
                false,
            )?;
            // The upstream gradient enters as a weighted sum: one element-wise pass, small
            // beside the attention backward at these lengths.
            y.f_mul(&grad)?.f_sum(Kind::Float)?.f_backward()?;
            Ok(())
        };
        if let Err(e) = run() {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    let forward = 2.0 * (batch * heads * head_dim) as f64 * (seq as f64).powi(2);
    Ok(AttentionRate {
        batch,
        heads,
        seq,
        head_dim,
        flops_per_s: 3.5 * forward / median(&mut seconds),
    })
}

/// One fp32 optimizer step of a negligible decoder (module doc).
fn touch_training_kernels(device: Device) -> Result<(), TrainError> {
    let spec: ModelSpec = serde_json::from_value(serde_json::json!({
        "activation": "swiglu", "bias": false, "dropout": 0.0, "ffn_hidden": 64,
        "rope_base": 10000.0, "norm_eps": 1e-5, "init_std": 0.02,
        "rotary_fraction": 1.0, "block": {"kind": "sequential"}, "embedding_norm": false,
        "head_dim": 8, "heads": 4, "hidden": 32, "kv_heads": 2, "layers": 2,
        "norm": "rmsnorm", "params": 20_640, "position": "rope", "seq_len": 16,
        "tied_embeddings": true, "vocab": 64}))
    .map_err(|e| TrainError::Plan(e.to_string()))?;
    let optimizer: OptimizerSpec = serde_json::from_value(serde_json::json!({
        "kind": "adamw", "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "grad_clip": 1.0,
        "weight_decay": 0.1}))
    .map_err(|e| TrainError::Plan(e.to_string()))?;
    let model = Model::new(&spec, Precision::Fp32, 0, device)?;
    let mut trainer = Trainer::new(model, &optimizer, Precision::Fp32, 0, device)?;
    trainer.step(0, 1, 1e-3, |_| {
        let ids = Tensor::f_randint(64, [1, 17], (Kind::Int64, device))?;
        Ok((ids.narrow(1, 0, 16), ids.narrow(1, 1, 16)))
    })?;
    Ok(())
}

/// Least-squares fit of r(d) = r∞ · d / (d + n½) through the rates (module doc): returns
/// (r∞, n½). n½ is 0 when the rates do not fall with smaller d.
pub fn fit_half_dim(rates: &[MatmulRate]) -> (f64, f64) {
    let points: Vec<(f64, f64)> = rates
        .iter()
        .filter(|r| r.flops_per_s > 0.0 && r.size > 0)
        .map(|r| (1.0 / r.size as f64, 1.0 / r.flops_per_s))
        .collect();
    let n = points.len() as f64;
    if n < 2.0 {
        return (points.first().map_or(0.0, |p| 1.0 / p.1), 0.0);
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope = (sxy / sxx).max(0.0);
    let intercept = mean_y - slope * mean_x;
    if intercept <= 0.0 {
        // Rates still rising at the widest d: no asymptote in range; keep the best rate.
        let best = rates.iter().map(|r| r.flops_per_s).fold(0.0, f64::max);
        return (best, 0.0);
    }
    (1.0 / intercept, slope / intercept)
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn mem_total_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The UTC calendar date of `t` (Hinnant's `civil_from_days`, "chrono-Compatible Low-Level
/// Date Algorithms", 2013).
pub fn utc_date(t: SystemTime) -> String {
    let days = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
