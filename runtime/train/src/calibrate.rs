//! Measures this machine's matmul FLOP/s (fp32, bf16, fp16) and memory bandwidth with libtorch.
//!
//! Each matmul rate is the median of repeats at several sizes; bandwidth is a large tensor
//! copy.
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
use crate::spec::{Activation, ModelSpec, Precision};

/// Square matmul sizes measured by default (the ones the brief of `kiln calibrate` names).
pub const DEFAULT_MATMUL_SIZES: [i64; 3] = [1024, 2048, 4096];
/// Timed repeats per measurement; the median is kept.
pub const DEFAULT_REPEATS: usize = 5;
/// Bytes of the copied tensor: 256 MiB, far beyond any CPU's last-level cache (assumption:
/// the largest server L3 caches are a few hundred MiB only on multi-socket totals).
pub const DEFAULT_COPY_BYTES: u64 = 256 << 20;
/// A size whose single matmul takes longer than this is the last one measured for its
/// type (the next, 8× the work, would take minutes on a slow path such as fp16 without
/// hardware support).
pub const MAX_MATMUL_SECONDS: f64 = 2.0;

/// What to measure.
#[derive(Clone, Debug)]
pub struct CalibrationConfig {
    pub device: Device,
    pub sizes: Vec<i64>,
    pub repeats: usize,
    pub copy_bytes: u64,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        CalibrationConfig {
            device: Device::Cpu,
            sizes: DEFAULT_MATMUL_SIZES.to_vec(),
            repeats: DEFAULT_REPEATS,
            copy_bytes: DEFAULT_COPY_BYTES,
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
    catch_torch(|| measure(config))
}

fn measure(config: &CalibrationConfig) -> Result<Calibration, TrainError> {
    let device = config.device;
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
    })
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

/// Training FLOPs per token: 3 × the forward pass (the backward is twice the forward) of
/// Kaplan et al. 2020, Table 1, C_forward ≈ 2N + 2·n_layer·n_ctx·d_attn, with N the weights
/// that multiply activations: every block matrix and the output projection (the input
/// embedding is a lookup).
pub fn training_flops_per_token(spec: &ModelSpec) -> f64 {
    let h = spec.hidden as f64;
    let q = (spec.heads * spec.head_dim) as f64;
    let kv = (spec.kv_heads * spec.head_dim) as f64;
    let ffn_matrices = if spec.activation == Activation::Swiglu {
        3.0
    } else {
        2.0
    };
    let per_layer = 2.0 * h * q + 2.0 * h * kv + ffn_matrices * h * spec.ffn_hidden as f64;
    let n = spec.layers as f64 * per_layer + spec.vocab as f64 * h;
    3.0 * (2.0 * n + 2.0 * spec.layers as f64 * spec.seq_len as f64 * q)
}

/// The tokens/s a model would train at if its matmuls ran at the measured rate: an upper
/// bound (small matrices, attention and element-wise work run below it).
pub fn predicted_tokens_per_s(cal: &Calibration, spec: &ModelSpec, precision: Precision) -> f64 {
    cal.matmul_flops_per_s(precision) / training_flops_per_token(spec)
}
