//! Rank statistics of the model-based filters' reports: ranks with ties averaged, Spearman's
//! rank correlation (Spearman 1904), the area under the ROC curve as the Mann–Whitney
//! statistic (Mann & Whitney 1947; Hanley & McNeil 1982), and sample quantiles.
//!
//! # Definitions
//! - Ranks are 1-based; a group of equal values gets the mean of the ranks it spans.
//! - Spearman's ρ is Pearson's correlation of the two rank vectors (Spearman 1904, "The Proof
//!   and Measurement of Association between Two Things"); with ties averaged this is the
//!   usual tie-corrected coefficient (scipy's `spearmanr`).
//! - The AUC is `U / (n₊ n₋)` with `U = R₊ − n₊(n₊ + 1)/2`, `R₊` the sum of the positives'
//!   ranks among all scores: the probability that a random positive scores above a random
//!   negative, ties counting one half (Hanley & McNeil 1982, "The Meaning and Use of the Area
//!   under a Receiver Operating Characteristic (ROC) Curve", Radiology 143, Eq. 1–2).
//! - The `q` quantile interpolates linearly between the order statistics around
//!   `(n − 1) q` (Hyndman & Fan 1996's definition 7, numpy's default).

/// The 1-based ranks of `values`, ties given the mean of their ranks. `NaN`s sort last
/// (callers pass finite values).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && values[order[j]] == values[order[i]] {
            j += 1;
        }
        // Positions i..j (0-based) hold ranks i+1..=j: their mean.
        let rank = (i + 1 + j) as f64 / 2.0;
        for &k in &order[i..j] {
            ranks[k] = rank;
        }
        i = j;
    }
    ranks
}

/// Pearson's correlation of `a` and `b`; `None` with fewer than two pairs, lengths that
/// differ, or either side constant.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// Spearman's rank correlation of `a` and `b` (ties averaged); `None` where [`pearson`] has
/// none.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() {
        return None;
    }
    pearson(&average_ranks(a), &average_ranks(b))
}

/// The area under the ROC curve of `scores` for `labels` (true = positive), ties counting one
/// half; `None` without both a positive and a negative.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let ranks = average_ranks(scores);
    let r_pos: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l)
        .map(|(r, _)| r)
        .sum();
    let u = r_pos - (pos as f64) * (pos as f64 + 1.0) / 2.0;
    Some(u / (pos as f64 * neg as f64))
}

/// The `q` quantile (`q` in [0, 1]) of `sorted` (ascending): linear interpolation between
/// the order statistics around `(n − 1) q`; `None` for no values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = h - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// [`quantile_sorted`] of unsorted values.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile_sorted(&sorted, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
    }

    #[test]
    fn spearman_and_auc_by_hand() {
        // Monotone: 1; reversed: −1.
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // scipy.stats.spearmanr([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) = 0.8
        let r = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]).unwrap();
        assert!((r - 0.8).abs() < 1e-12);
        // Positives {0.9, 0.5}, negatives {0.5, 0.1}: pairs (0.9>0.5, 0.9>0.1, 0.5=0.5,
        // 0.5>0.1) = 3.5 of 4.
        let a = auc(&[0.9, 0.5, 0.5, 0.1], &[true, true, false, false]).unwrap();
        assert!((a - 0.875).abs() < 1e-12);
        assert_eq!(auc(&[1.0, 2.0], &[true, true]), None);
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(4.0));
        assert_eq!(quantile(&v, 0.5), Some(2.5));
        // numpy.quantile([1, 2, 3, 4], 0.9) = 3.7
        assert!((quantile(&v, 0.9).unwrap() - 3.7).abs() < 1e-12);
        assert_eq!(quantile(&[], 0.5), None);
    }
}
