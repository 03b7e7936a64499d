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
