//! Sizing from a wall-clock or dollar budget: `budget = 30d` (or `budget_usd` with the
//! cluster's `gpu_hour_price`) becomes the most compute the declared cluster delivers in it,
//! at the step time kiln predicts for the model and layout that compute gives.

use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::{Provenance, Record, Slot, Value};
use crate::units::{self, Dim};

/// The first guess of the model FLOP utilisation (each round replaces it with the prediction).
const FIRST_MFU: f64 = 0.4;
/// Rounds of the bisection on log C, and the relative width of the bracket at which it stops.
const MAX_ROUNDS: usize = 24;
const TOLERANCE: f64 = 0.001;

/// The budget in seconds of the whole cluster, when the experiment declares one; `Err`
/// for what cannot be read (both `compute` and a budget, a price budget without a price).
fn seconds(exp: &Record, gpus: f64) -> Result<Option<(f64, String)>, Diagnostic> {
    let (time, usd) = (exp.num("budget"), exp.num("budget_usd"));
    let at = exp.span_of("budget").or(exp.span_of("budget_usd"));
    let refuse = |message: String, help: &str| {
        let mut d = Diagnostic::new(codes::COMPUTE_BUDGET, message).help(help.to_string());
        if let Some(s) = at {
            d = d.at(s, "the budget");
        }
        d
    };
    if (time.is_some() || usd.is_some())
        && exp
            .slot("compute")
            .is_some_and(|s| matches!(s.provenance, Provenance::Declared))
    {
        return Err(refuse(
            "a budget beside `compute`: kiln would have two budgets".into(),
            "keep one of `compute`, `budget` and `budget_usd`",
        ));
    }
    match (time, usd) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(refuse(
            "both `budget` and `budget_usd`".into(),
            "keep one: the wall clock or the dollars",
        )),
        (Some(t), None) => Ok(Some((t, format!("{} days", units::trim(t / 86400.0))))),
        (None, Some(usd)) => {
            match exp.record("cluster").and_then(|c| c.num("gpu_hour_price")) {
                Some(price) => Ok(Some((
                    usd / (price * gpus) * 3600.0,
                    format!("{} at {} on {gpus} GPUs", units::show(usd, Dim::Usd), units::show(price, Dim::UsdPerHr)),
                ))),
                None => Err(refuse(
                    "`budget_usd` needs the cluster's `gpu_hour_price`".into(),
                    "add `gpu_hour_price = 2.5 USD/h` to the cluster, or give the budget as a duration (`budget = 30d`)",
                )),
            }
        }
    }
}

/// Sizes `pristine` (resolved, not derived) from its budget: each round sets `compute`,
/// derives (`derive`: the model, tokens and layout it gives) and predicts the wall clock. Returns the derived record and its diagnostics; `None` when the experiment
/// declares no budget (the caller derives as usual).
pub fn solve(
    pristine: &Record,
    derive: &dyn Fn(&mut Record) -> Vec<Diagnostic>,
) -> Option<(Record, Vec<Diagnostic>)> {
    let cluster = pristine.record("cluster");
    let node = cluster.and_then(|c| c.record("node"));
    let gpus = cluster.and_then(|c| c.num("nodes")).unwrap_or(1.0)
        * node.and_then(|n| n.num("gpus_per_node")).unwrap_or(1.0);
    let peak = node
        .and_then(|n| n.record("gpu"))
        .and_then(|g| g.num("peak_bf16"))
        .unwrap_or(1e15);
    let (budget_s, shown) = match seconds(pristine, gpus) {
        Ok(None) => return None,
        Ok(Some(b)) => b,
        Err(d) => {
            let mut record = pristine.clone();
            let mut diags = derive(&mut record);
            diags.push(d);
            return Some((record, diags));
        }
    };
    // The predicted wall clock rises with the compute, though in steps (the shape and the
    // layout change discretely), so a ratio iteration can cycle between two shapes: bisect
    // log C for the most compute whose predicted wall clock fits in the budget, starting
    // from a bracket around the first guess (widened until it holds the answer).
    let guess = gpus * peak * FIRST_MFU * budget_s;
    let round = |compute: f64| -> (Record, Vec<Diagnostic>, Option<f64>) {
        let mut record = pristine.clone();
        record.fields.insert(
            "compute".into(),
            Slot {
                value: Value::Num(compute, Dim::Flops),
                provenance: Provenance::Derived(String::new()),
                span: None,
            },
        );
        let diags = derive(&mut record);
        let wall = if diags.iter().any(Diagnostic::is_error) {
            None
        } else {
            crate::analyse::analyse(&record).and_then(|(_, a)| a.cost.map(|c| c.wall_clock_s))
        };
        (record, diags, wall)
    };
    let (mut lo, mut hi) = (guess / 4.0, guess * 4.0);
    let mut best: Option<(Record, Vec<Diagnostic>, f64)> = None;
    for _ in 0..MAX_ROUNDS {
        let mid = (lo * hi).sqrt();
        let (record, diags, wall) = round(mid);
        let Some(wall) = wall else {
            // The model or layout for this compute does not derive (or fit): say why.
            return Some((record, diags));
        };
        if wall <= budget_s {
            best = Some((record, diags, wall));
            lo = mid;
        } else {
            hi = mid;
        }
        if hi / lo - 1.0 <= TOLERANCE {
            break;
        }
    }
    let Some((mut record, diags, wall)) = best else {
        let (record, mut diags, _) = round(lo);
        let mut d = Diagnostic::new(
            codes::COMPUTE_BUDGET,
            format!("the budget ({shown}) buys less than a quarter of what {gpus} GPUs at 40 % MFU would do in it"),
        )
        .help("raise the budget, or give `compute` directly");
        if let Some(s) = pristine
            .span_of("budget")
            .or(pristine.span_of("budget_usd"))
        {
            d = d.at(s, "the budget");
        }
        diags.push(d);
        return Some((record, diags));
    };
    if let Some(slot) = record.fields.get_mut("compute") {
        slot.provenance = Provenance::Derived(format!(
            "the most compute whose predicted wall clock ({:.2} days, for the model and layout it sizes) fits the budget of {shown}",
            wall / 86400.0
        ));
    }
    Some((record, diags))
}
