//! AdamW with decoupled weight decay, global gradient-norm clipping, fp16 dynamic loss scaling.
//!
//! # AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", Algorithm 2)
//! For each parameter θ with gradient g at step t (1-based):
//! m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; m̂ = m/(1−β₁ᵗ); v̂ = v/(1−β₂ᵗ);
//! θ ← θ·(1 − lr·λ) − lr·m̂/(√v̂ + ε).
//! The decay multiplies by the learning rate (PyTorch's `AdamW`, the schedule multiplier
//! η_t of Algorithm 2 folded into lr) and, as in GPT-3 and Megatron-LM, skips the 1-D
//! parameters (norm gains and biases). The arithmetic follows PyTorch's single-tensor
//! `adamw` (`denom = √v / √(1−β₂ᵗ) + ε`, step size lr/(1−β₁ᵗ)).
//!
//! # Clipping (Pascanu et al. 2013, Algorithm 1)
//! The global L2 norm over all gradients, ‖g‖ = ‖(‖g₁‖, …, ‖g_n‖)‖ as PyTorch's
//! `clip_grad_norm_` computes it; when it exceeds the clip c every gradient is scaled by
//! c / (‖g‖ + [`CLIP_EPS`]).
//!
//! # Loss scaling (Micikevicius et al. 2018, Sec. 3.2; PyTorch's `GradScaler`)
//! The loss is multiplied by the scale before the backward pass and the gradients divided
//! by it after. When a gradient is inf or NaN the step is skipped and the scale multiplied
//! by [`BACKOFF_FACTOR`]; after [`GROWTH_INTERVAL`] good steps in a row it is multiplied by
//! [`GROWTH_FACTOR`]. Starts at [`INIT_LOSS_SCALE`].

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::TrainError;
use crate::spec::OptimizerSpec;

/// Added to the norm in the clip coefficient (PyTorch's `clip_grad_norm_`).
pub const CLIP_EPS: f64 = 1e-6;
/// `GradScaler`'s `init_scale`: 2^16.
pub const INIT_LOSS_SCALE: f64 = 65_536.0;
/// `GradScaler`'s `growth_factor`.
pub const GROWTH_FACTOR: f64 = 2.0;
/// `GradScaler`'s `backoff_factor`.
pub const BACKOFF_FACTOR: f64 = 0.5;
/// `GradScaler`'s `growth_interval`: good steps in a row before the scale grows.
pub const GROWTH_INTERVAL: u64 = 2000;

/// AdamW's hyper-parameters and state.
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Updates applied so far (t of the bias corrections).
    pub step: u64,
    /// First and second moments, one per parameter, in the model's parameter order.
    pub exp_avg: Vec<Tensor>,
    pub exp_avg_sq: Vec<Tensor>,
    /// Whether each parameter is decayed (not 1-D).
    decay: Vec<bool>,
}

impl AdamW {
    /// Zero moments for `params`; only `kind = "adamw"` is built.
    pub fn new(spec: &OptimizerSpec, params: &[(String, Tensor)]) -> Result<AdamW, TrainError> {
        if spec.kind.as_str() != "adamw" {
            return Err(TrainError::Unsupported(format!(
                "optimizer `{}`: this runtime builds adamw",
                spec.kind
            )));
        }
        let valid = |b: f64| (0.0..1.0).contains(&b);
        if !valid(spec.beta1) || !valid(spec.beta2) || spec.eps <= 0.0 || spec.weight_decay < 0.0 {
            return Err(TrainError::Plan(format!(
                "optimizer: beta1 = {}, beta2 = {} must be in [0, 1), eps = {} positive, weight_decay = {} not negative",
                spec.beta1, spec.beta2, spec.eps, spec.weight_decay
            )));
        }
        let zeros = || {
            params
                .iter()
                .map(|(_, p)| Tensor::zeros_like(p).set_requires_grad(false))
                .collect::<Vec<_>>()
        };
        Ok(AdamW {
            beta1: spec.beta1,
            beta2: spec.beta2,
            eps: spec.eps,
            weight_decay: spec.weight_decay,
            step: 0,
            exp_avg: zeros(),
            exp_avg_sq: zeros(),
            decay: params.iter().map(|(_, p)| p.dim() > 1).collect(),
        })
    }

    /// One update of every parameter from its gradient, at learning rate `lr`.
    pub fn update(&mut self, params: &[(String, Tensor)], lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let step_size = lr / bias1;
        tch::no_grad(|| {
            for (i, (_, p)) in params.iter().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                if self.decay[i] && self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let m = &mut self.exp_avg[i];
                let _ = m.g_mul_scalar_(self.beta1);
                let _ = m.g_add_(&(&g * (1.0 - self.beta1)));
                let v = &mut self.exp_avg_sq[i];
                let _ = v.g_mul_scalar_(self.beta2);
                let _ = v.g_add_(&(&g * &g * (1.0 - self.beta2)));
                let denom = (v.sqrt() / bias2_sqrt) + self.eps;
                let _ = p.g_sub_(&(&*m / denom * step_size));
            }
        });
    }

    /// The moments by name (`exp_avg.NAME`, `exp_avg_sq.NAME`), for a checkpoint.
    pub fn named_state(&self, params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * params.len());
        for (i, (name, _)) in params.iter().enumerate() {
            out.push((format!("exp_avg.{name}"), self.exp_avg[i].shallow_clone()));
            out.push((
                format!("exp_avg_sq.{name}"),
                self.exp_avg_sq[i].shallow_clone(),
            ));
        }
        out
    }

    /// Restores the moments from a checkpoint's tensors (every one must be there, with the
    /// parameter's shape) and the step count.
    pub fn load_state(
        &mut self,
        params: &[(String, Tensor)],
        state: &[(String, Tensor)],
        step: u64,
    ) -> Result<(), TrainError> {
        let find = |key: &str| state.iter().find(|(n, _)| n == key).map(|(_, t)| t);
        for (i, (name, p)) in params.iter().enumerate() {
            for (prefix, dest) in [
                ("exp_avg", &mut self.exp_avg[i]),
                ("exp_avg_sq", &mut self.exp_avg_sq[i]),
            ] {
                let key = format!("{prefix}.{name}");
                let src = find(&key).ok_or_else(|| {
                    TrainError::Input(format!("the optimizer state has no `{key}`"))
                })?;
                if src.size() != p.size() {
                    return Err(TrainError::Input(format!(
                        "the optimizer state's `{key}` has shape {:?}, the parameter {:?}",
                        src.size(),
                        p.size()
                    )));
                }
                tch::no_grad(|| dest.f_copy_(src))?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Zeroes (drops) every parameter's gradient.
pub fn zero_grads(params: &[(String, Tensor)]) {
    for (_, p) in params {
        let mut p = p.shallow_clone();
        p.zero_grad();
    }
}

/// Multiplies every gradient by `factor`.
pub fn scale_grads(params: &[(String, Tensor)], factor: f64) {
    tch::no_grad(|| {
        for (_, p) in params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.g_mul_scalar_(factor);
            }
        }
    });
}

/// The global L2 norm of the gradients (fp32, as `clip_grad_norm_`), or `None` without any.
pub fn grad_norm(params: &[(String, Tensor)]) -> Option<f64> {
    let norms: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| p.grad())
        .filter(|g| g.defined())
        .map(|g| g.to_kind(Kind::Float).norm())
        .collect();
    if norms.is_empty() {
        return None;
    }
    Tensor::stack(&norms, 0).norm().f_double_value(&[]).ok()
}

/// Scales the gradients so their global norm is at most `max_norm` (see the module doc);
/// `max_norm ≤ 0` turns clipping off. Returns the coefficient applied (1 when none).
pub fn clip_grads(params: &[(String, Tensor)], norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    let coefficient = max_norm / (norm + CLIP_EPS);
    if coefficient < 1.0 {
        scale_grads(params, coefficient);
        coefficient
    } else {
        1.0
    }
}

/// Dynamic loss scaling for fp16 (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Good steps since the scale last changed.
    pub growth_tracker: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: INIT_LOSS_SCALE,
            growth_tracker: 0,
        }
    }
}

impl LossScaler {
    /// After a step: backs off on an overflow, grows after a run of good steps.
    pub fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= BACKOFF_FACTOR;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == GROWTH_INTERVAL {
                self.scale *= GROWTH_FACTOR;
                self.growth_tracker = 0;
            }
        }
    }
}
