//! Model families: a concrete shape for a parameter count from a family's published
//! width, depth and head rules (`model = auto { family = … }`).

use crate::model::ModelShape;

/// A family's rules, read off its published models.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub name: &'static str,
    /// The standard-library model whose other fields (vocabulary, sequence length,
    /// activation, norm, positions) every size of the family shares.
    pub base: &'static str,
    pub head_dim: f64,
    pub kv_heads: f64,
    /// FFN width: `ffn_multiplier` × 8/3 × hidden, rounded up to a multiple of `ffn_multiple`.
    pub ffn_multiplier: f64,
    pub ffn_multiple: f64,
    /// hidden / layers, the range the family's published sizes span.
    pub aspect: (f64, f64),
}

/// Llama 3 (Dubey et al. 2024, Table 3: 8B 32 × 4096, FFN 14,336, 32 heads; 70B 80 × 8192,
/// FFN 28,672, 64 heads; 405B 126 × 16,384, FFN 53,248, 128 heads; 8 key/value heads and
/// head dimension 128 throughout). The FFN rule is Meta's reference implementation's
/// (llama/model.py: 2/3 of 4·hidden, times `ffn_dim_multiplier` 1.3, rounded up to
/// `multiple_of` 1024; 405B uses 1.2). hidden / layers spans 102 (70B) to 130 (405B).
pub const LLAMA3: Family = Family {
    name: "llama3",
    base: "llama3_8b",
    head_dim: 128.0,
    kv_heads: 8.0,
    ffn_multiplier: 1.3,
    ffn_multiple: 1024.0,
    aspect: (100.0, 132.0),
};

pub const FAMILIES: &[Family] = &[LLAMA3];

pub fn find(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// The fields `model = auto { family }` leaves to derive.rs.
pub const SHAPE_FIELDS: [&str; 5] = ["layers", "hidden", "ffn_hidden", "heads", "kv_heads"];

/// The preset name of an auto model of `family` (`llama3 (auto)`), which derive.rs reads back.
pub fn auto_name(family: &Family) -> String {
    format!("{} (auto)", family.name)
}

/// The family of a model record's preset name, when it is an auto model.
pub fn of_preset(preset: &str) -> Option<&'static Family> {
    find(preset.strip_suffix(" (auto)")?)
}

/// Most layers and widest hidden the search below considers.
const MAX_LAYERS: u32 = 512;
const MAX_HIDDEN_STEPS: u32 = 256;

impl Family {
    /// The FFN width for `hidden` under the family's rule.
    pub fn ffn_hidden(&self, hidden: f64) -> f64 {
        let raw = (self.ffn_multiplier * (8.0 * hidden / 3.0).floor()).floor();
        (raw / self.ffn_multiple).ceil() * self.ffn_multiple
    }

    /// The shape whose total parameters are closest to `params`, from `base` (the family's
    /// vocabulary, sequence length and layer kinds): hidden a multiple of head_dim ×
    /// kv_heads (whole heads in whole groups), hidden / layers within the family's range; of
    /// equally close shapes the one nearest the middle of that range. `None` when no shape
    /// of at most 512 layers comes within a factor of two.
    pub fn shape(&self, base: &ModelShape, params: f64) -> Option<ModelShape> {
        let step = self.head_dim * self.kv_heads;
        let middle = (self.aspect.0 * self.aspect.1).sqrt();
        let mut best: Option<(f64, f64, ModelShape)> = None;
        for k in 1..=MAX_HIDDEN_STEPS {
            let hidden = step * k as f64;
            let lo = (hidden / self.aspect.1).ceil().max(1.0) as u32;
            let hi = ((hidden / self.aspect.0).floor() as u32).min(MAX_LAYERS);
            for layers in lo..=hi {
                let mut s = base.clone();
                s.layers = layers as f64;
                s.hidden = hidden;
                s.ffn_hidden = self.ffn_hidden(hidden);
                s.heads = hidden / self.head_dim;
                s.kv_heads = self.kv_heads;
                s.head_dim = self.head_dim;
                let off = (s.params().total / params).ln().abs();
                let aspect = (hidden / layers as f64 / middle).ln().abs();
                let better = match &best {
                    None => true,
                    Some((o, a, _)) => off < *o - 1e-12 || (off - *o).abs() <= 1e-12 && aspect < *a,
                };
                if better {
                    best = Some((off, aspect, s));
                }
            }
        }
        best.filter(|(off, _, _)| *off < 2f64.ln())
            .map(|(_, _, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule gives the published FFN widths of Llama 3 8B and 70B.
    #[test]
    fn llama3_ffn_rule() {
        assert_eq!(LLAMA3.ffn_hidden(4096.0), 14336.0);
        assert_eq!(LLAMA3.ffn_hidden(8192.0), 28672.0);
    }
}
