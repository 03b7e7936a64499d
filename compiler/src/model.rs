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
    /// The share of each head's dimensions that rotary embeddings rotate (1 without
    /// `rotary_fraction`; GPT-NeoX-20B and GPT-J-6B 0.25).
    pub rotary_fraction: f64,
    pub bias: bool,
    /// How attention and the MLP meet the residual stream (`model.block`).
    pub block: BlockLayout,
    /// A norm on the token embeddings before the first layer (BLOOM).
    pub embedding_norm: bool,
}

/// A layer's layout: the sub-layers one after the other, or both on the layer's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockLayout {
    /// y = h + mlp(ln2(h)) with h = x + attn(ln1(x)) (GPT-2, Llama).
    Sequential,
    /// y = x + attn(ln1(x)) + mlp(ln2(x)), with ln1 = ln2 when `shared_norm` (GPT-J, PaLM
    /// Sec. 2 "Parallel Layers"; GPT-NeoX has two).
    Parallel { shared_norm: bool },
}

impl BlockLayout {
    /// Reads `model.block` (`sequential`, or `parallel { shared_norm }`).
    pub fn from_record(r: &Record) -> Option<BlockLayout> {
        let block = r.record("block")?;
        Some(match block.kind.as_str() {
            "parallel" => BlockLayout::Parallel {
                shared_norm: block.bool("shared_norm")?,
            },
            _ => BlockLayout::Sequential,
        })
    }

    /// Norms per layer: one before each sub-layer, one in all with a shared norm.
    pub fn norms(self) -> f64 {
        match self {
            BlockLayout::Parallel { shared_norm: true } => 1.0,
            _ => 2.0,
        }
    }

    pub fn is_parallel(self) -> bool {
        matches!(self, BlockLayout::Parallel { .. })
    }
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
            rotary_fraction: r.num("rotary_fraction")?,
            bias: r.bool("bias")?,
            block: BlockLayout::from_record(r)?,
            embedding_norm: r.bool("embedding_norm")?,
        })
    }

    /// Parameters of one norm: `hidden` gains, plus `hidden` biases for LayerNorm (Ba et al.
    /// 2016); RMSNorm has gains only (Zhang & Sennrich 2019).
    pub fn norm_params(&self) -> f64 {
        if self.layernorm {
            2.0 * self.hidden
        } else {
            self.hidden
        }
    }

    /// Parameters outside the layers that are not embeddings: the final norm and, with
    /// `embedding_norm`, the norm on the embeddings (BigScience 2022, Sec. 3.2.3).
    pub fn outer_norm_params(&self) -> f64 {
        self.norm_params() * if self.embedding_norm { 2.0 } else { 1.0 }
    }

    /// Counts every weight of the decoder, matrix by matrix:
    /// - attention: W_q and W_o are hidden × (heads · head_dim); W_k and W_v are
    ///   hidden × (kv_heads · head_dim), smaller under grouped-query attention
    ///   (Ainslie et al. 2023, Sec. 2);
    /// - feed-forward: 3 · hidden · ffn_hidden for SwiGLU (Shazeer 2020, Eq. 6: W, V, W2),
    ///   2 · hidden · ffn_hidden otherwise (Vaswani et al. 2017, Eq. 2);
    /// - biases on every linear layer when `bias` (GPT-2/3 style);
    /// - norms ([`ModelShape::norm_params`] each): two per layer, or one with the parallel
    ///   block's shared norm (GPT-J's single `ln_1`, PaLM Sec. 2), one final norm, and one on
    ///   the embeddings with `embedding_norm` (BLOOM's `word_embeddings_layernorm`);
    /// - the token embedding, an untied output projection of the same size, and a learned
    ///   position table of seq_len × hidden when positions are learned (RoPE, partial or
    ///   not, and ALiBi have no parameters; Transformer-XL relative positions add W_{k,R}
    ///   per layer).
    ///
    /// This is the count the papers report for Llama 3 (8.03B, Table 3 of Dubey et al. 2024),
    /// GPT-3 (175B, Table 2.1 of Brown et al. 2020), GPT-NeoX-20B (20,554,567,680, Black et
    /// al. 2022, Table 1) and BLOOM-176B (176,247,271,424, BigScience 2022, Table 3);
    /// test_params pins them.
    pub fn params(&self) -> ParamCount {
        let per_layer = self.layer_params();
        let non_embedding = self.layers * per_layer + self.outer_norm_params();
        let h = self.hidden;
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

    /// One layer's parameters: attention, feed-forward, their biases and the layer's norms.
    pub fn layer_params(&self) -> f64 {
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
        attention
            + attention_bias
            + relative
            + ffn
            + ffn_bias
            + self.block.norms() * self.norm_params()
    }

    /// Dimensions of each head that rotary embeddings rotate: rotary_fraction × head_dim
    /// (K-R011 keeps it a whole even number); 0 without rotary positions.
    pub fn rotary_dims(&self) -> f64 {
        if self.rotary {
            self.rotary_fraction * self.head_dim
        } else {
            0.0
        }
    }
}
