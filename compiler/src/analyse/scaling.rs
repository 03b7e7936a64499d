//! Scaling: compute, predicted loss, compute-optimal and inference-aware sizes, and epochs
//! per source.

use super::setup::{Law, Objective, Setup};
use serde::Serialize;

/// Training compute in the scaling-law convention, C ≈ 6·N·D (Kaplan et al. 2020, Sec. 2.1;
/// Hoffmann et al. 2022, Sec. 3.3), with N the total parameters.
pub fn compute_flops(params: f64, tokens: f64) -> f64 {
    6.0 * params * tokens
}

impl Law {
    /// Predicted loss (nats per token) of N parameters trained on D tokens.
    pub fn loss(&self, n: f64, d: f64) -> f64 {
        match *self {
            // Hoffmann et al. 2022, Eq. 2 (approach 3).
            Law::Hoffmann {
                e,
                a,
                b,
                alpha,
                beta,
            } => e + a / n.powf(alpha) + b / d.powf(beta),
            // Kaplan et al. 2020, Eq. 1.5.
            Law::Kaplan {
                n_c,
                d_c,
                alpha_n,
                alpha_d,
            } => ((n_c / n).powf(alpha_n / alpha_d) + d_c / d).powf(alpha_d),
        }
    }

    /// The N and D that minimise the loss for compute C = 6·N·D.
    pub fn compute_optimal(&self, compute: f64) -> (f64, f64) {
        match *self {
            // Hoffmann et al. 2022, Eq. 4: N_opt = G·(C/6)^(β/(α+β)), G = (αA/(βB))^(1/(α+β)).
            Law::Hoffmann {
                a, b, alpha, beta, ..
            } => {
                let g = (alpha * a / (beta * b)).powf(1.0 / (alpha + beta));
                let n = g * (compute / 6.0).powf(beta / (alpha + beta));
                (n, compute / (6.0 * n))
            }
            // No closed form over (N, D) for Eq. 1.5: minimise along C = 6ND numerically.
            Law::Kaplan { .. } => {
                let n = minimise_log(|n| self.loss(n, compute / (6.0 * n)), 1e3, 1e16);
                (n, compute / (6.0 * n))
            }
        }
    }

    /// The compute for which `n` parameters are compute-optimal (inverts `compute_optimal`).
    pub fn compute_for_optimal_params(&self, n: f64) -> f64 {
        let (mut lo, mut hi) = (1e10f64.ln(), 1e32f64.ln());
        for _ in 0..200 {
            let mid = (lo + hi) / 2.0;
            if self.compute_optimal(mid.exp()).0 < n {
                lo = mid
            } else {
                hi = mid
            }
        }
        ((lo + hi) / 2.0).exp()
    }

    /// The tokens for which `n` parameters are the optimum: compute-optimal (the N of
    /// `compute_optimal(6·n·D)` is `n`) when `serve_tokens` is 0, else Sardana et al.'s
    /// optimum for the loss `n` reaches on them. Both optima grow with D (more tokens, more
    /// compute or a lower loss), so D is found by bisection on log D.
    pub fn optimal_tokens(&self, n: f64, serve_tokens: f64) -> Option<f64> {
        let optimum = |d: f64| {
            if serve_tokens > 0.0 {
                self.inference_optimal(self.loss(n, d), serve_tokens)
                    .map_or(f64::INFINITY, |(n, _)| n)
            } else {
                self.compute_optimal(compute_flops(n, d)).0
            }
        };
        let d = bisect_log(|d| optimum(d) >= n, 1.0, 1e20)?;
        (d > 1.0).then_some(d)
    }

    /// Tokens N parameters need to reach `loss`, if they can.
    pub fn tokens_for_loss(&self, n: f64, loss: f64) -> Option<f64> {
        match *self {
            Law::Hoffmann {
                e,
                a,
                b,
                alpha,
                beta,
            } => {
                let rest = loss - e - a / n.powf(alpha);
                (rest > 0.0).then(|| (b / rest).powf(1.0 / beta))
            }
            Law::Kaplan {
                n_c,
                d_c,
                alpha_n,
                alpha_d,
            } => {
                let rest = loss.powf(1.0 / alpha_d) - (n_c / n).powf(alpha_n / alpha_d);
                (rest > 0.0).then(|| d_c / rest)
            }
        }
    }

    /// Sardana et al. 2024 (Sec. 2, Eq. 2): for the loss `target`, the N and D_train that
    /// minimise 6·N·D_train + 2·N·D_serve.
    pub fn inference_optimal(&self, target: f64, serve_tokens: f64) -> Option<(f64, f64)> {
        let cost = |n: f64| match self.tokens_for_loss(n, target) {
            Some(d) => 6.0 * n * d + 2.0 * n * serve_tokens,
            None => f64::INFINITY,
        };
        // The smallest N that can reach the target at all; search above it.
        let floor = bisect_log(|n| self.tokens_for_loss(n, target).is_some(), 1e3, 1e16)?;
        let n = minimise_log(cost, floor * 1.000001, 1e16);
        Some((n, self.tokens_for_loss(n, target)?))
    }
}

impl Law {
    /// The compute-optimal N and D whose loss is `target` (loss falls as compute grows).
    pub fn compute_optimal_for_loss(&self, target: f64) -> Option<(f64, f64)> {
        let c = bisect_log(
            |c| {
                let (n, d) = self.compute_optimal(c);
                self.loss(n, d) <= target
            },
            1e10,
            1e34,
        )?;
        Some(self.compute_optimal(c))
    }
}

/// Golden-section search for the minimum of a unimodal function of log N.
fn minimise_log(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    let (mut a, mut b) = (lo.ln(), hi.ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..200 {
        let c = b - ratio * (b - a);
        let d = a + ratio * (b - a);
        if f(c.exp()) < f(d.exp()) {
            b = d;
        } else {
            a = c;
        }
    }
    ((a + b) / 2.0).exp()
}

/// The smallest x in [lo, hi] where `ok` holds, assuming it holds above some threshold.
fn bisect_log(ok: impl Fn(f64) -> bool, lo: f64, hi: f64) -> Option<f64> {
    if !ok(hi) {
        return None;
    }
    if ok(lo) {
        return Some(lo);
    }
    let (mut a, mut b) = (lo.ln(), hi.ln());
    for _ in 0..200 {
        let m = (a + b) / 2.0;
        if ok(m.exp()) {
            b = m
        } else {
            a = m
        }
    }
    Some(b.exp())
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Optimum {
    pub optimal_params: f64,
    pub optimal_tokens: f64,
    /// The law's loss at the optimum.
    pub loss: f64,
}

/// Sardana et al. 2024, Eq. 2's total cost, 6·N·D_train + 2·N·D_serve, of two models of the
/// same loss: the compute-optimal one and the inference-aware optimum.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct InferenceSaving {
    pub chinchilla_params: f64,
    pub chinchilla_tokens: f64,
    pub chinchilla_total_flops: f64,
    pub inference_aware_total_flops: f64,
    pub saving_flops: f64,
    /// `saving_flops` as a share of the compute-optimal model's total.
    pub saving_fraction: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SourceEpochs {
    pub source: String,
    pub drawn_tokens: f64,
    pub unique_tokens: Option<f64>,
    pub epochs: Option<f64>,
    pub max_epochs: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Scaling {
    pub law: String,
    pub tokens: f64,
    pub tokens_per_param: f64,
    /// 6·N·D.
    pub compute_flops: f64,
    pub predicted_loss: f64,
    /// The compute-optimal N and D for the same compute under the chosen law.
    pub chinchilla: Optimum,
    /// Kaplan et al. 2020's law, for contrast: its compute-optimal N and D.
    pub kaplan: Optimum,
    /// With `objective = inference_aware`: Sardana et al.'s optimum for the same loss.
    pub inference_aware: Option<Optimum>,
    /// With `objective = inference_aware`: training plus serving FLOPs of that optimum against
    /// the compute-optimal model of the same loss (Sardana et al. 2024, Fig. 1).
    pub inference_saving: Option<InferenceSaving>,
    pub serve_tokens: Option<f64>,
    pub epochs: Vec<SourceEpochs>,
}

/// Kaplan et al. 2020, Table 2 (the joint L(N, D) fit of Eq. 1.5): the law shown for contrast.
const KAPLAN: Law = Law::Kaplan {
    n_c: 6.4e13,
    d_c: 1.8e13,
    alpha_n: 0.076,
    alpha_d: 0.103,
};

pub fn analyse(setup: &Setup) -> Scaling {
    let n = setup.params.total;
    let d = setup.tokens;
    let c = compute_flops(n, d);
    let law = setup.law;
    let predicted_loss = law.loss(n, d);
    let (n_opt, d_opt) = law.compute_optimal(c);
    let (kn, kd) = KAPLAN.compute_optimal(c);
    let serve_tokens = match setup.objective {
        Objective::InferenceAware { serve_tokens } => Some(serve_tokens),
        _ => None,
    };
    let inference_aware = serve_tokens.and_then(|serve| {
        let (n, d) = law.inference_optimal(predicted_loss, serve)?;
        Some(Optimum {
            optimal_params: n,
            optimal_tokens: d,
            loss: law.loss(n, d),
        })
    });
    let inference_saving = match (&inference_aware, serve_tokens) {
        (Some(ia), Some(serve)) => law.compute_optimal_for_loss(ia.loss).map(|(cn, cd)| {
            let total = |n: f64, d: f64| compute_flops(n, d) + 2.0 * n * serve;
            let chinchilla = total(cn, cd);
            let aware = total(ia.optimal_params, ia.optimal_tokens);
            InferenceSaving {
                chinchilla_params: cn,
                chinchilla_tokens: cd,
                chinchilla_total_flops: chinchilla,
                inference_aware_total_flops: aware,
                saving_flops: chinchilla - aware,
                saving_fraction: (chinchilla - aware) / chinchilla,
            }
        }),
        _ => None,
    };
    Scaling {
        law: setup.law_name.clone(),
        tokens: d,
        tokens_per_param: d / n,
        compute_flops: c,
        predicted_loss,
        chinchilla: Optimum {
            optimal_params: n_opt,
            optimal_tokens: d_opt,
            loss: law.loss(n_opt, d_opt),
        },
        kaplan: Optimum {
            optimal_params: kn,
            optimal_tokens: kd,
            loss: KAPLAN.loss(kn, kd),
        },
        inference_aware,
        inference_saving,
        serve_tokens,
        epochs: setup
            .sources
            .iter()
            .map(|s| SourceEpochs {
                source: s.name.clone(),
                drawn_tokens: s.drawn_tokens,
                unique_tokens: s.unique_tokens,
                epochs: s.unique_tokens.map(|u| s.drawn_tokens / u),
                max_epochs: s.max_epochs,
            })
            .collect(),
    }
}
