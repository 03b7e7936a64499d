//! The decoder-only transformer built from the plan's model spec, with its initialisation.
//!
//! Token (and learned position) embeddings, an optional embedding norm, pre-norm blocks of
//! grouped-query causal attention and a feed-forward layer (one after the other, or in
//! parallel), a final norm and the (tied or untied) output projection.
//!
//! # Architecture (each choice from the spec, with its source)
//! - Norms before each sub-layer and at the end (pre-norm; Xiong et al. 2020, "On Layer
//!   Normalization in the Transformer Architecture", as GPT-2 and Llama): RMSNorm (Zhang &
//!   Sennrich 2019, Eq. 4: x / RMS(x) · g) or LayerNorm with gain and bias (Ba et al. 2016).
//!   Computed in fp32 under mixed precision, as `torch.autocast` does. With
//!   `embedding_norm`, one more norm on the embeddings before the first block (BLOOM's
//!   `word_embeddings_layernorm`, BigScience 2022, Sec. 3.2.3).
//! - Blocks (`block`): sequential, h = x + attn(norm1(x)), y = h + mlp(norm2(h)) (GPT-2,
//!   Llama); or parallel, y = x + attn(norm1(x)) + mlp(norm2(x)) (GPT-NeoX's
//!   `use_parallel_residual`, Black et al. 2022, Sec. 2.1.2), with norm1 = norm2 when the
//!   norm is shared (GPT-J; PaLM, Chowdhery et al. 2022, Sec. 2 "Parallel Layers").
//! - Attention: queries from `heads` heads, keys and values from `kv_heads` heads, each
//!   key/value head shared by `heads / kv_heads` query heads (grouped-query attention,
//!   Ainslie et al. 2023, Sec. 2), causal, scaled by 1/√head_dim (Vaswani et al. 2017,
//!   Eq. 1), through libtorch's `scaled_dot_product_attention` (FlashAttention-style kernels
//!   where libtorch has them).
//! - Positions: rotary embeddings on queries and keys (Su et al. 2021, RoFormer Eq. 34 with
//!   θ_i = `rope_base`^(−2i/d), Sec. 3.2.2; the plan's `model.rope_base`), in the "rotate half" layout of GPT-NeoX and
//!   Hugging Face's Llama, so the weights load there; on the first d = `rotary_fraction` ×
//!   head_dim dimensions of each head only, the rest passed through, with θ_i over that d
//!   (GPT-NeoX's `rotary_pct`: Hugging Face's `GPTNeoXRotaryEmbedding` and Megatron-LM's
//!   `RotaryEmbedding` both take the frequencies over the rotated dimensions); a learned table added to the token
//!   embeddings (Radford et al. 2019, GPT-2); or ALiBi's per-head linear biases (Press et
//!   al. 2022, Sec. 3, slopes as the authors' `get_slopes`). Transformer-XL relative
//!   positions are not built (an error says so).
//! - Feed-forward: SwiGLU, W2(SiLU(x W) ⊙ x V) (Shazeer 2020, Eq. 6), or W2 f(x W1) with f
//!   GELU in its tanh form (Hendrycks & Gimpel 2016, Sec. 2; GPT-2's `gelu`) or ReLU
//!   (Vaswani et al. 2017, Eq. 2).
//! - Biases on every linear layer when `bias` (GPT-2/3); dropout, when the spec asks for it,
//!   on the embeddings, the attention probabilities and each sub-layer's output before the
//!   residual add (Vaswani et al. 2017, Sec. 5.4; GPT-2).
//!
//! # Initialisation (GPT-2, Radford et al. 2019, Sec. 2.3; Megatron-LM's `init_method_normal`
//! and `scaled_init_method_normal`)
//! Every matrix and embedding ~ N(0, σ²) with σ the plan's `model.init_std` (0.02 in GPT-2);
//! the two projections that write into the residual stream (attention output, feed-forward
//! down) ~ N(0, (σ / √(2·layers))²),
//! GPT-2's 1/√N scaling of the N = 2·layers residual layers; norm gains 1, biases 0. The
//! values are drawn in a fixed order from libtorch's generator seeded with the plan's seed,
//! so a seed determines the initial weights.
//!
//! # Precision
//! Parameters are always fp32 (the master weights). Under bf16 or fp16 mixed precision each
//! matrix multiplication casts its input and weight to the compute type, and the residual
//! stream, norms, embeddings and the loss stay fp32 — the op policy of `torch.autocast`
//! (Micikevicius et al. 2018, "Mixed Precision Training", Sec. 3.1: fp32 master weights,
//! low-precision arithmetic). Gradients flow through the casts into the fp32 parameters.
//!
//! # Names
//! Parameters are named as Hugging Face's `LlamaForCausalLM` names them
//! (`model.layers.0.self_attn.q_proj.weight`, …), linear weights stored `[out, in]`.

use tch::{Kind, Reduction, Tensor};

use crate::error::TrainError;
use crate::spec::{Activation, Block as BlockLayout, ModelSpec, Norm, Position, Precision};

/// GELU's tanh approximation, as GPT-2's code computes it.
pub const GELU_APPROXIMATION: &str = "tanh";
/// The target id that the loss ignores (PyTorch's `ignore_index` default); token ids are
/// never negative, so no target is ignored.
const IGNORE_INDEX: i64 = -100;

/// A linear layer `y = x Wᵀ + b` with the weight stored `[out, in]`.
struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor, kind: Kind) -> Tensor {
        let bias = self.bias.as_ref().map(|b| b.to_kind(kind));
        x.to_kind(kind).linear(&self.weight.to_kind(kind), bias)
    }
}

enum NormLayer {
    Rms {
        gain: Tensor,
        eps: f64,
    },
    Layer {
        gain: Tensor,
        bias: Tensor,
        eps: f64,
    },
}

impl NormLayer {
    /// Normalises the last dimension in fp32.
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x.to_kind(Kind::Float);
        let width = x.size().last().copied().unwrap_or(1);
        match self {
            NormLayer::Rms { gain, eps } => x.rms_norm([width], Some(gain), *eps),
            NormLayer::Layer { gain, bias, eps } => {
                x.layer_norm([width], Some(gain), Some(bias), *eps, true)
            }
        }
    }
}

enum FeedForward {
    Gated {
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    Plain {
        up: Linear,
        down: Linear,
        activation: Activation,
    },
}

impl FeedForward {
    fn forward(&self, x: &Tensor, kind: Kind) -> Tensor {
        match self {
            FeedForward::Gated { gate, up, down } => {
                let h = gate.forward(x, kind).silu() * up.forward(x, kind);
                down.forward(&h, kind)
            }
            FeedForward::Plain {
                up,
                down,
                activation,
            } => {
                let h = up.forward(x, kind);
                let h = match activation {
                    Activation::Relu => h.relu(),
                    _ => h.gelu(GELU_APPROXIMATION),
                };
                down.forward(&h, kind)
            }
        }
    }
}

struct Block {
    attn_norm: NormLayer,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    /// The norm before the MLP; `None` in a parallel block with a shared norm.
    mlp_norm: Option<NormLayer>,
    mlp: FeedForward,
}

/// Rotary tables for positions `0..seq_len`: cos and sin of shape `[1, 1, seq_len, dims]`,
/// `dims` the rotated dimensions of each head.
struct Rope {
    cos: Tensor,
    sin: Tensor,
    dims: i64,
}

impl Rope {
    fn new(seq_len: i64, dims: i64, base: f64, device: tch::Device) -> Rope {
        let half = dims / 2;
        let mut cos = Vec::with_capacity((seq_len * dims) as usize);
        let mut sin = Vec::with_capacity((seq_len * dims) as usize);
        for pos in 0..seq_len {
            // The two halves share frequencies (the rotate-half layout).
            for _ in 0..2 {
                for i in 0..half {
                    let theta = base.powf(-2.0 * i as f64 / dims as f64);
                    let angle = pos as f64 * theta;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let shape = [1, 1, seq_len, dims];
        Rope {
            cos: Tensor::from_slice(&cos).view(shape).to_device(device),
            sin: Tensor::from_slice(&sin).view(shape).to_device(device),
            dims,
        }
    }

    /// Rotates the first `dims` dimensions of `x`, `[batch, heads, t, head_dim]`, by
    /// position; the others pass through.
    fn apply(&self, x: &Tensor) -> Tensor {
        let t = x.size()[2];
        let head_dim = x.size()[3];
        let half = self.dims / 2;
        let cos = self.cos.narrow(2, 0, t).to_kind(x.kind());
        let sin = self.sin.narrow(2, 0, t).to_kind(x.kind());
        let r = x.narrow(3, 0, self.dims);
        let x1 = r.narrow(3, 0, half);
        let x2 = r.narrow(3, half, half);
        let rotated = Tensor::cat(&[x2.neg(), x1], 3);
        let r = &r * cos + rotated * sin;
        if self.dims == head_dim {
            r
        } else {
            Tensor::cat(&[r, x.narrow(3, self.dims, head_dim - self.dims)], 3)
        }
    }
}

/// The rotated dimensions of each head: `rotary_fraction` × head_dim, when that is a whole
/// even number of at least 2 (the compiler's K-R011 checks the same).
pub fn rotary_dims(spec: &ModelSpec) -> Result<i64, TrainError> {
    let dims = spec.rotary_fraction * spec.head_dim as f64;
    let whole = dims.round();
    if !(spec.rotary_fraction > 0.0 && spec.rotary_fraction <= 1.0)
        || (dims - whole).abs() > 1e-9
        || whole < 2.0
        || whole % 2.0 != 0.0
    {
        return Err(TrainError::Plan(format!(
            "model.rotary_fraction = {} of head_dim = {} is {dims} dimensions: rotary embeddings rotate a whole number of pairs",
            spec.rotary_fraction, spec.head_dim
        )));
    }
    Ok(whole as i64)
}

/// ALiBi's slopes for `n` heads (Press et al. 2022, Sec. 3; the authors' `get_slopes`): the
/// geometric sequence starting at 2^(−8/n) for a power of two, otherwise those of the
/// largest power of two below `n` followed by every other slope of twice that.
pub fn alibi_slopes(n: usize) -> Vec<f64> {
    fn power_of_two(n: usize) -> Vec<f64> {
        let start = 2f64.powf(-8.0 / n as f64);
        (0..n).map(|i| start * start.powi(i as i32)).collect()
    }
    if n == 0 {
        return Vec::new();
    }
    if n.is_power_of_two() {
        return power_of_two(n);
    }
    let closest = 1usize << (usize::BITS - 1 - n.leading_zeros());
    let mut slopes = power_of_two(closest);
    slopes.extend(
        alibi_slopes(2 * closest)
            .into_iter()
            .step_by(2)
            .take(n - closest),
    );
    slopes
}

/// The decoder (see the module doc).
pub struct Model {
    spec: ModelSpec,
    compute: Kind,
    /// Every parameter, in creation order, with its name; the layers hold handles to the
    /// same tensors.
    params: Vec<(String, Tensor)>,
    embed: Tensor,
    positions: Option<Tensor>,
    /// The norm on the embeddings (`embedding_norm`).
    embed_norm: Option<NormLayer>,
    blocks: Vec<Block>,
    final_norm: NormLayer,
    lm_head: Option<Tensor>,
    rope: Option<Rope>,
    /// `[1, heads, seq_len, seq_len]`: ALiBi's biases with −∞ above the diagonal.
    alibi: Option<Tensor>,
    /// Elements over all parameters, counted when built (ZeRO 3 frees the tensors).
    param_count: u64,
}

/// The libtorch type the matrix multiplications run in.
pub fn compute_kind(precision: Precision) -> Result<Kind, TrainError> {
    match precision {
        Precision::Fp32 => Ok(Kind::Float),
        Precision::Bf16Mixed => Ok(Kind::BFloat16),
        Precision::Fp16Mixed => Ok(Kind::Half),
        Precision::Fp8Mixed => Err(TrainError::Unsupported(
            "precision fp8_mixed needs FP8 matrix units (Hopper or newer) and per-tensor scaling, which this runtime does not build; it trains fp32, bf16_mixed and fp16_mixed".into(),
        )),
    }
}

/// Checks that a spec describes a model this runtime builds; the error says what is wrong.
pub fn validate(spec: &ModelSpec) -> Result<(), TrainError> {
    let dims = [
        ("layers", spec.layers),
        ("hidden", spec.hidden),
        ("ffn_hidden", spec.ffn_hidden),
        ("heads", spec.heads),
        ("kv_heads", spec.kv_heads),
        ("head_dim", spec.head_dim),
        ("vocab", spec.vocab),
        ("seq_len", spec.seq_len),
    ];
    for (name, v) in dims {
        if v == 0 || v > i32::MAX as u64 {
            return Err(TrainError::Plan(format!(
                "model.{name} = {v}: it must be between 1 and {}",
                i32::MAX
            )));
        }
    }
    if !spec.heads.is_multiple_of(spec.kv_heads) {
        return Err(TrainError::Plan(format!(
            "model.heads = {} is not a multiple of kv_heads = {}: grouped-query attention shares each key/value head among a whole number of query heads",
            spec.heads, spec.kv_heads
        )));
    }
    if spec.position == Position::Rope && !spec.head_dim.is_multiple_of(2) {
        return Err(TrainError::Plan(format!(
            "model.head_dim = {} is odd: rotary embeddings rotate pairs of channels",
            spec.head_dim
        )));
    }
    if spec.position == Position::Rope {
        rotary_dims(spec)?;
    }
    if spec.position == Position::Relative {
        return Err(TrainError::Unsupported(
            "position = relative (Transformer-XL relative positions) is not built by this runtime; it builds rope, learned and alibi".into(),
        ));
    }
    if !(0.0..1.0).contains(&spec.dropout) {
        return Err(TrainError::Plan(format!(
            "model.dropout = {}: it must be in [0, 1)",
            spec.dropout
        )));
    }
    Ok(())
}

/// A tensor of `shape` drawn from N(0, std²), or filled with `fill`, requiring gradients.
fn param(shape: &[i64], init: Init, device: tch::Device) -> Tensor {
    let t = tch::no_grad(|| {
        let mut t = Tensor::empty(shape, (Kind::Float, device));
        match init {
            Init::Normal(std) => t.normal_(0.0, std),
            Init::Fill(v) => t.fill_(v),
        }
    });
    t.set_requires_grad(true)
}

#[derive(Clone, Copy)]
enum Init {
    Normal(f64),
    Fill(f64),
}

struct Builder {
    device: tch::Device,
    params: Vec<(String, Tensor)>,
}

impl Builder {
    fn add(&mut self, name: String, shape: &[i64], init: Init) -> Tensor {
        let t = param(shape, init, self.device);
        self.params.push((name, t.shallow_clone()));
        t
    }

    fn linear(&mut self, name: &str, out: i64, inp: i64, bias: bool, std: f64) -> Linear {
        let weight = self.add(format!("{name}.weight"), &[out, inp], Init::Normal(std));
        let bias = bias.then(|| self.add(format!("{name}.bias"), &[out], Init::Fill(0.0)));
        Linear { weight, bias }
    }

    fn norm(&mut self, name: &str, kind: Norm, width: i64, eps: f64) -> NormLayer {
        let gain = self.add(format!("{name}.weight"), &[width], Init::Fill(1.0));
        match kind {
            Norm::Rmsnorm => NormLayer::Rms { gain, eps },
            Norm::Layernorm => NormLayer::Layer {
                gain,
                bias: self.add(format!("{name}.bias"), &[width], Init::Fill(0.0)),
                eps,
            },
        }
    }
}

impl Model {
    /// Builds and initialises the model on `device` from libtorch's generator seeded with
    /// `seed`; its parameter count must equal the plan's `model.params`.
    pub fn new(
        spec: &ModelSpec,
        precision: Precision,
        seed: u64,
        device: tch::Device,
    ) -> Result<Model, TrainError> {
        validate(spec)?;
        let compute = compute_kind(precision)?;
        // The generator takes an i64; the seed's bits are kept.
        tch::manual_seed(seed as i64);
        let (h, f, v, t) = (
            spec.hidden as i64,
            spec.ffn_hidden as i64,
            spec.vocab as i64,
            spec.seq_len as i64,
        );
        let q_width = (spec.heads * spec.head_dim) as i64;
        let kv_width = (spec.kv_heads * spec.head_dim) as i64;
        let residual_std = spec.init_std / (2.0 * spec.layers as f64).sqrt();
        let mut b = Builder {
            device,
            params: Vec::new(),
        };
        let embed = b.add(
            "model.embed_tokens.weight".into(),
            &[v, h],
            Init::Normal(spec.init_std),
        );
        let positions = (spec.position == Position::Learned).then(|| {
            b.add(
                "model.embed_positions.weight".into(),
                &[t, h],
                Init::Normal(spec.init_std),
            )
        });
        // BLOOM's name for it (`word_embeddings_layernorm`), under Llama's `model.` prefix.
        let embed_norm = spec
            .embedding_norm
            .then(|| b.norm("model.embed_layernorm", spec.norm, h, spec.norm_eps));
        let mut blocks = Vec::with_capacity(spec.layers as usize);
        for i in 0..spec.layers {
            let p = format!("model.layers.{i}");
            let attn_norm = b.norm(&format!("{p}.input_layernorm"), spec.norm, h, spec.norm_eps);
            let q = b.linear(
                &format!("{p}.self_attn.q_proj"),
                q_width,
                h,
                spec.bias,
                spec.init_std,
            );
            let k = b.linear(
                &format!("{p}.self_attn.k_proj"),
                kv_width,
                h,
                spec.bias,
                spec.init_std,
            );
            let vv = b.linear(
                &format!("{p}.self_attn.v_proj"),
                kv_width,
                h,
                spec.bias,
                spec.init_std,
            );
            let o = b.linear(
                &format!("{p}.self_attn.o_proj"),
                h,
                q_width,
                spec.bias,
                residual_std,
            );
            // A parallel block with a shared norm has one (GPT-J's `ln_1`); otherwise the
            // second is the MLP's (GPT-NeoX's name for it in both layouts).
            let mlp_norm = (spec.block.norms() == 2).then(|| {
                b.norm(
                    &format!("{p}.post_attention_layernorm"),
                    spec.norm,
                    h,
                    spec.norm_eps,
                )
            });
            let mlp = match spec.activation {
                Activation::Swiglu => FeedForward::Gated {
                    gate: b.linear(
                        &format!("{p}.mlp.gate_proj"),
                        f,
                        h,
                        spec.bias,
                        spec.init_std,
                    ),
                    up: b.linear(&format!("{p}.mlp.up_proj"), f, h, spec.bias, spec.init_std),
                    down: b.linear(&format!("{p}.mlp.down_proj"), h, f, spec.bias, residual_std),
                },
                activation => FeedForward::Plain {
                    up: b.linear(&format!("{p}.mlp.up_proj"), f, h, spec.bias, spec.init_std),
                    down: b.linear(&format!("{p}.mlp.down_proj"), h, f, spec.bias, residual_std),
                    activation,
                },
            };
            blocks.push(Block {
                attn_norm,
                q,
                k,
                v: vv,
                o,
                mlp_norm,
                mlp,
            });
        }
        let final_norm = b.norm("model.norm", spec.norm, h, spec.norm_eps);
        let lm_head = (!spec.tied_embeddings).then(|| {
            b.add(
                "lm_head.weight".into(),
                &[v, h],
                Init::Normal(spec.init_std),
            )
        });
        let rope = match spec.position {
            Position::Rope => Some(Rope::new(t, rotary_dims(spec)?, spec.rope_base, device)),
            _ => None,
        };
        let alibi = (spec.position == Position::Alibi).then(|| alibi_bias(spec, device));
        let built: u64 = b.params.iter().map(|(_, t)| t.numel() as u64).sum();
        let model = Model {
            param_count: built,
            spec: spec.clone(),
            compute,
            params: b.params,
            embed,
            positions,
            embed_norm,
            blocks,
            final_norm,
            lm_head,
            rope,
            alibi,
        };
        if built != spec.params {
            return Err(TrainError::Plan(format!(
                "the model built from the spec has {built} parameters but the plan's model.params is {}: the runtime and the compiler disagree on the architecture",
                spec.params
            )));
        }
        Ok(model)
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The type the matrix multiplications run in.
    pub fn compute_kind(&self) -> Kind {
        self.compute
    }

    /// Every parameter with its name, in a fixed order.
    pub fn named_parameters(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Elements over all parameters.
    pub fn param_count(&self) -> u64 {
        self.param_count
    }

    /// The transformer blocks.
    pub fn layers(&self) -> usize {
        self.blocks.len()
    }

    /// Logits `[batch, t, vocab]` (in the compute type) for token ids `[batch, t]`,
    /// `t ≤ seq_len`; dropout only when `train`. The same pieces as [`Model::embed`],
    /// [`Model::block`] and [`Model::head`], which ZeRO 3 runs one at a time.
    pub fn logits(&self, tokens: &Tensor, train: bool) -> Tensor {
        let mut x = self.embed(tokens, train);
        for i in 0..self.blocks.len() {
            x = self.block(i, &x, train);
        }
        self.head(&x)
    }

    /// The residual stream entering the first block, `[batch, t, hidden]` in fp32: token
    /// (and learned position) embeddings, the embedding norm when the spec has one, then
    /// dropout when `train`.
    // The residual adds make new tensors on purpose: tch's `+=` is an in-place add, which
    // would overwrite activations that autograd saved for the backward pass.
    #[allow(clippy::assign_op_pattern)]
    pub fn embed(&self, tokens: &Tensor, train: bool) -> Tensor {
        let t = tokens.size()[1];
        let p = if train { self.spec.dropout } else { 0.0 };
        let mut x = Tensor::embedding(&self.embed, tokens, -1, false, false);
        if let Some(pos) = &self.positions {
            x = x + pos.narrow(0, 0, t);
        }
        if let Some(norm) = &self.embed_norm {
            x = norm.forward(&x);
        }
        x.dropout(p, train)
    }

    /// Block `i` (attention and feed-forward, each pre-norm with a residual add; in parallel
    /// both read `x`) on the residual stream `x`, `[batch, t, hidden]`.
    #[allow(clippy::assign_op_pattern)]
    pub fn block(&self, i: usize, x: &Tensor, train: bool) -> Tensor {
        let kind = self.compute;
        let block = &self.blocks[i];
        let size = x.size();
        let (batch, t) = (size[0], size[1]);
        let p = if train { self.spec.dropout } else { 0.0 };
        let (heads, kv_heads, head_dim) = (
            self.spec.heads as i64,
            self.spec.kv_heads as i64,
            self.spec.head_dim as i64,
        );
        let alibi = self
            .alibi
            .as_ref()
            .map(|a| a.narrow(2, 0, t).narrow(3, 0, t).to_kind(kind));
        let h = block.attn_norm.forward(x);
        let q = block
            .q
            .forward(&h, kind)
            .view([batch, t, heads, head_dim])
            .transpose(1, 2);
        let k = block
            .k
            .forward(&h, kind)
            .view([batch, t, kv_heads, head_dim])
            .transpose(1, 2);
        let v = block
            .v
            .forward(&h, kind)
            .view([batch, t, kv_heads, head_dim])
            .transpose(1, 2);
        let (q, k) = match &self.rope {
            Some(rope) => (rope.apply(&q), rope.apply(&k)),
            None => (q, k),
        };
        // The causal mask is libtorch's own (`is_causal`), or part of ALiBi's biases.
        let y = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            alibi.as_ref(),
            p,
            alibi.is_none(),
            None::<f64>,
            kv_heads != heads,
        );
        let y = y
            .transpose(1, 2)
            .contiguous()
            .view([batch, t, heads * head_dim]);
        let attn = block.o.forward(&y, kind).dropout(p, train);
        // The MLP's norm, or the one norm of the block when it is shared.
        let mlp_norm = block.mlp_norm.as_ref().unwrap_or(&block.attn_norm);
        match self.spec.block {
            BlockLayout::Sequential => {
                let x = x + attn;
                let mlp = block
                    .mlp
                    .forward(&mlp_norm.forward(&x), kind)
                    .dropout(p, train);
                x + mlp
            }
            BlockLayout::Parallel { shared_norm } => {
                let h2 = if shared_norm { h } else { mlp_norm.forward(x) };
                let mlp = block.mlp.forward(&h2, kind).dropout(p, train);
                x + attn + mlp
            }
        }
    }

    /// The final norm and the output projection: logits in the compute type.
    pub fn head(&self, x: &Tensor) -> Tensor {
        let kind = self.compute;
        let x = self.final_norm.forward(x);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        x.to_kind(kind).linear(&head.to_kind(kind), None::<Tensor>)
    }

    /// The cross-entropy of `targets` under the model given `inputs` (both `[batch, t]`),
    /// in fp32, averaged over tokens (`Reduction::Mean`) or summed.
    pub fn loss(&self, inputs: &Tensor, targets: &Tensor, train: bool, sum: bool) -> Tensor {
        self.cross_entropy(&self.logits(inputs, train), targets, sum)
    }

    /// The cross-entropy of `targets` under `logits`, in fp32, averaged or summed.
    pub fn cross_entropy(&self, logits: &Tensor, targets: &Tensor, sum: bool) -> Tensor {
        let logits = logits.to_kind(Kind::Float);
        let v = self.spec.vocab as i64;
        let reduction = if sum { Reduction::Sum } else { Reduction::Mean };
        logits.reshape([-1, v]).cross_entropy_loss::<Tensor>(
            &targets.reshape([-1]),
            None,
            reduction,
            IGNORE_INDEX,
            0.0,
        )
    }
}

/// ALiBi's additive attention biases `[1, heads, seq_len, seq_len]`: −m_h·(i − j) for keys
/// j ≤ i, −∞ above the diagonal (the causal mask).
fn alibi_bias(spec: &ModelSpec, device: tch::Device) -> Tensor {
    let t = spec.seq_len as i64;
    let slopes: Vec<f32> = alibi_slopes(spec.heads as usize)
        .into_iter()
        .map(|s| s as f32)
        .collect();
    let slopes = Tensor::from_slice(&slopes)
        .view([1, -1, 1, 1])
        .to_device(device);
    let pos = Tensor::arange(t, (Kind::Float, device));
    // distance[i, j] = j − i (≤ 0 on and below the diagonal).
    let distance = pos.view([1, t]) - pos.view([t, 1]);
    let future = distance.gt(0.0);
    let bias = distance.view([1, 1, t, t]) * slopes;
    bias.masked_fill(&future.view([1, 1, t, t]), f64::NEG_INFINITY)
}
