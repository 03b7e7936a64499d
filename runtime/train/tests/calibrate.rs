//! Calibration measures positive rates and writes the keys `kiln calibrate` reads.

use kiln_train::calibrate::{
    calibrate, predicted_tokens_per_s, training_flops_per_token, utc_date, CalibrationConfig,
};
use kiln_train::spec::{ModelSpec, Precision};

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
    let json = serde_json::to_value(&cal).unwrap();
    for key in [
        "date",
        "threads",
        "memory_bytes",
        "memory_bytes_per_s",
        "matmul_fp32_flops_per_s",
        "matmul_bf16_flops_per_s",
        "matmul_fp16_flops_per_s",
    ] {
        assert!(!json[key].is_null(), "{key}");
    }
    assert_eq!(cal.date.len(), 10);
}

#[test]
fn flops_per_token_and_prediction() {
    let spec: ModelSpec = serde_json::from_value(serde_json::json!({
        "activation": "swiglu", "bias": false, "dropout": 0.0, "ffn_hidden": 384,
        "head_dim": 32, "heads": 4, "hidden": 128, "kv_heads": 2, "layers": 4,
        "norm": "rmsnorm", "params": 1049728, "position": "rope", "seq_len": 128,
        "tied_embeddings": true, "vocab": 2048}))
    .unwrap();
    // Per layer 2·128·128 + 2·128·64 + 3·128·384 = 196,608; N = 4 × that + 2048 · 128.
    let n = 4.0 * 196_608.0 + 2048.0 * 128.0;
    let expected = 3.0 * (2.0 * n + 2.0 * 4.0 * 128.0 * 128.0);
    assert_eq!(training_flops_per_token(&spec), expected);
    let cal = kiln_train::Calibration {
        date: "2026-01-01".into(),
        device: "cpu".into(),
        threads: 2,
        memory_bytes: 1,
        memory_bytes_per_s: 1.0,
        matmul_fp32_flops_per_s: 1e11,
        matmul_bf16_flops_per_s: 2e11,
        matmul_fp16_flops_per_s: 3e11,
        matmuls: vec![],
        copy_bytes: 1,
    };
    assert_eq!(
        predicted_tokens_per_s(&cal, &spec, Precision::Fp32),
        1e11 / expected
    );
    assert_eq!(
        predicted_tokens_per_s(&cal, &spec, Precision::Bf16Mixed),
        2e11 / expected
    );
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
