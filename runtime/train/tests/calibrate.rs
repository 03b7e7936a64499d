//! Calibration measures positive rates and writes the keys `kiln calibrate` reads.

use kiln_train::calibrate::{
    calibrate, fit_half_dim, utc_date, CalibrationConfig, MatmulRate, TRAINING_MATMUL_DIMS,
};

#[test]
fn measures_this_machine() {
    let config = CalibrationConfig {
        sizes: vec![64, 256],
        repeats: 3,
        copy_bytes: 16 << 20,
        ..Default::default()
    };
    let cal = calibrate(&config).unwrap();
    assert_eq!(cal.matmuls.len(), 6);
    for r in &cal.matmuls {
        assert!(r.flops_per_s > 0.0 && r.seconds.len() == 3, "{r:?}");
    }
    assert!(cal.matmul_fp32_flops_per_s > 0.0);
    assert!(cal.matmul_bf16_flops_per_s > 0.0);
    assert!(cal.matmul_fp16_flops_per_s > 0.0);
    assert!(cal.memory_bytes_per_s > 0.0 && cal.memory_bytes > 0);
    assert_eq!(cal.training_matmuls.len(), TRAINING_MATMUL_DIMS.len());
    assert!(cal.matmul_half_dim >= 0.0 && cal.matmul_fit_flops_per_s > 0.0);
    assert!(
        cal.runtime_bytes > 10 << 20,
        "libtorch's resident memory: {}",
        cal.runtime_bytes
    );
    let json = serde_json::to_value(&cal).unwrap();
    for key in [
        "date",
        "threads",
        "memory_bytes",
        "memory_bytes_per_s",
        "matmul_fp32_flops_per_s",
        "matmul_bf16_flops_per_s",
        "matmul_fp16_flops_per_s",
        "matmul_half_dim",
        "runtime_bytes",
    ] {
        assert!(!json[key].is_null(), "{key}");
    }
    assert_eq!(cal.date.len(), 10);
}

/// Rates drawn exactly from r(d) = r∞ · d / (d + n½) give back r∞ and n½; rates that do
/// not fall with d give n½ = 0.
#[test]
fn half_performance_width_fit() {
    let rate = |d: i64, r_inf: f64, half: f64| MatmulRate {
        dtype: "fp32".into(),
        size: d,
        flops_per_s: r_inf * d as f64 / (d as f64 + half),
        seconds: vec![],
    };
    let rates: Vec<_> = [64, 128, 256, 512, 1024]
        .iter()
        .map(|&d| rate(d, 3e11, 85.0))
        .collect();
    let (r_inf, half) = fit_half_dim(&rates);
    assert!((r_inf / 3e11 - 1.0).abs() < 1e-9, "{r_inf}");
    assert!((half - 85.0).abs() < 1e-6, "{half}");
    let flat: Vec<_> = [64, 128, 256].iter().map(|&d| rate(d, 1e11, 0.0)).collect();
    let (r_inf, half) = fit_half_dim(&flat);
    assert!((r_inf / 1e11 - 1.0).abs() < 1e-9 && half.abs() < 1e-6);
}

#[test]
fn civil_dates() {
    use std::time::{Duration, UNIX_EPOCH};
    assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01");
    // 2024-02-29 (a leap day) is day 19,782 after the epoch.
    assert_eq!(
        utc_date(UNIX_EPOCH + Duration::from_secs(19_782 * 86_400)),
        "2024-02-29"
    );
    assert_eq!(
        utc_date(UNIX_EPOCH + Duration::from_secs(19_783 * 86_400)),
        "2024-03-01"
    );
}

/// The GPU measurements run on any device: small shapes here, on this CPU, give positive
/// rates and land in the calibration (`kiln calibrate --device cuda` runs the full grid).
#[test]
fn training_shaped_gemms_and_causal_attention_are_measured() {
    let config = CalibrationConfig {
        sizes: vec![64],
        repeats: 2,
        copy_bytes: 4 << 20,
        gemm_shapes: vec![(256, 384, 128), (128, 128, 512)],
        attention_shapes: vec![(1, 2, 128, 64), (1, 2, 256, 64)],
        ..Default::default()
    };
    let cal = calibrate(&config).unwrap();
    assert_eq!(cal.gemms.len(), 2);
    assert!(cal.gemms.iter().all(|g| g.flops_per_s > 0.0));
    let best = cal.gemms.iter().map(|g| g.flops_per_s).fold(0.0, f64::max);
    assert_eq!(cal.gemm_best_flops_per_s, best);
    assert_eq!(cal.attention.len(), 2);
    assert!(cal.attention.iter().all(|a| a.flops_per_s > 0.0));
    // The rate reported is the longest sequence's.
    assert_eq!(cal.attention_flops_per_s, cal.attention[1].flops_per_s);
    let bad = kiln_train::calibrate::measure_gemm(tch::Device::Cpu, 0, 8, 8, 1);
    assert!(bad.is_err());
}

#[test]
fn a_missing_cuda_device_is_an_error_not_a_panic() {
    if tch::Cuda::device_count() > 0 {
        return;
    }
    let err = calibrate(&CalibrationConfig::gpu(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no CUDA device 0"), "{err}");
}
