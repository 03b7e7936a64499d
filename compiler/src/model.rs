//! Model arithmetic from the declared shape: the parameter count of a decoder-only model.

use crate::ir::Record;
use serde::Serialize;

/// The shape of a decoder-only transformer, read from a resolved `model` record.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ModelShape {
    pub layers: f64,
    pub hidden: f64,
    pub ffn_hidden: f64,
    pub heads: f64,
    pub kv_heads: f64,
    pub head_dim: f64,
    pub vocab: f64,
    pub seq_len: f64,
    pub tied_embeddings: bool,
    /// SwiGLU has three FFN matrices (gate, up, down); GeLU and ReLU two.
    pub gated_ffn: bool,
    /// LayerNorm has a gain and a bias per channel; RMSNorm only a gain.
    pub layernorm: bool,
    pub learned_positions: bool,
    /// Transformer-XL style relative positions, with their own projection per layer.
    pub relative_positions: bool,
    /// Rotary embeddings applied to Q and K in every layer (Su et al. 2021).
    pub rotary: bool,
    pub bias: bool,
}

/// Parameters, split as Kaplan et al. (2020, Sec. 2.1) split them: embeddings (token and
/// position tables, and an untied output projection) and everything else.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ParamCount {
    pub total: f64,
    pub embedding: f64,
    pub non_embedding: f64,
}

impl ModelShape {
    /// Reads the shape once every field is derived; `None` if one is missing.
    pub fn from_record(r: &Record) -> Option<ModelShape> {
        Some(ModelShape {
            layers: r.num("layers")?,
            hidden: r.num("hidden")?,
            ffn_hidden: r.num("ffn_hidden")?,
            heads: r.num("heads")?,
            kv_heads: r.num("kv_heads")?,
            head_dim: r.num("head_dim")?,
            ..ModelShape::layer_kinds(r)?
        })
    }

    /// A model record's vocabulary, sequence length and layer kinds, its widths and depth at
    /// zero: what `model = auto { family }` sizes (family.rs).
    pub fn layer_kinds(r: &Record) -> Option<ModelShape> {
        Some(ModelShape {
            layers: 0.0,
            hidden: 0.0,
            ffn_hidden: 0.0,
            heads: 0.0,
            kv_heads: 0.0,
            head_dim: 0.0,
            vocab: r.num("vocab")?,
            seq_len: r.num("seq_len")?,
            tied_embeddings: r.bool("tied_embeddings")?,
            gated_ffn: r.sym("activation")? == "swiglu",
            layernorm: r.sym("norm")? == "layernorm",
            learned_positions: r.sym("position")? == "learned",
            relative_positions: r.sym("position")? == "relative",
            rotary: r.sym("position")? == "rope",
            bias: r.bool("bias")?,
        })
    }

    /// Counts every weight of the decoder, matrix by matrix:
    /// - attention: W_q and W_o are hidden × (heads · head_dim); W_k and W_v are
    ///   hidden × (kv_heads · head_dim), smaller under grouped-query attention
    ///   (Ainslie et al. 2023, Sec. 2);
    /// - feed-forward: 3 · hidden · ffn_hidden for SwiGLU (Shazeer 2020, Eq. 6: W, V, W2),
    ///   2 · hidden · ffn_hidden otherwise (Vaswani et al. 2017, Eq. 2);
    /// - biases on every linear layer when `bias` (GPT-2/3 style);
    /// - two norms per layer and one final norm: `hidden` gains, plus `hidden` biases for
    ///   LayerNorm (Ba et al. 2016); RMSNorm has gains only (Zhang & Sennrich 2019);
    /// - the token embedding, an untied output projection of the same size, and a learned
    ///   position table of seq_len × hidden when positions are learned (RoPE and
    ///   ALiBi have no parameters; Transformer-XL relative positions add W_{k,R} per layer).
    ///
    /// This is the count the papers report for Llama 3 (8.03B, Table 3 of Dubey et al. 2024)
    /// and GPT-3 (175B, Table 2.1 of Brown et al. 2020); test_params pins them.
    pub fn params(&self) -> ParamCount {
        let (h, f) = (self.hidden, self.ffn_hidden);
        let q_width = self.heads * self.head_dim;
        let kv_width = self.kv_heads * self.head_dim;
        let attention = 2.0 * h * q_width + 2.0 * h * kv_width;
        let attention_bias = if self.bias {
            q_width + 2.0 * kv_width + h
        } else {
            0.0
        };
        let ffn_matrices = if self.gated_ffn { 3.0 } else { 2.0 };
        let ffn = ffn_matrices * h * f;
        let ffn_bias = if self.bias {
            (ffn_matrices - 1.0) * f + h
        } else {
            0.0
        };
        // Transformer-XL relative positions (Dai et al. 2019, Sec. 3.3) add a projection of
        // the relative encodings, W_{k,R}: hidden × (heads · head_dim) per layer. With it the
        // Gopher and Chinchilla shapes give their published 280B and 70B (Rae et al. 2021,
        // Table 1; Hoffmann et al. 2022, Table 4); without it 258.7B and 65.0B.
        let relative = if self.relative_positions {
            h * q_width
        } else {
            0.0
        };
        let norm = if self.layernorm { 2.0 * h } else { h };
        let per_layer = attention + attention_bias + relative + ffn + ffn_bias + 2.0 * norm;
        let non_embedding = self.layers * per_layer + norm;
        let token_embedding = self.vocab * h;
        let output = if self.tied_embeddings {
            0.0
        } else {
            self.vocab * h
        };
        let positions = if self.learned_positions {
            self.seq_len * h
        } else {
            0.0
        };
        let embedding = token_embedding + output + positions;
        ParamCount {
            total: embedding + non_embedding,
            embedding,
            non_embedding,
        }
    }
}
