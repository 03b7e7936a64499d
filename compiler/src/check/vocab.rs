//! K-C010 tokenizer-vocab, K-C011 vocab-padding, K-C015 tokenizer-too-small.

use super::at;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::Record;

/// Megatron-LM pads the vocabulary to a multiple of 128 × tensor
/// (`--make-vocab-size-divisible-by`, default 128, times the tensor-parallel size).
pub const VOCAB_PAD_MULTIPLE: f64 = 128.0;

/// The tokens a byte-level BPE starts from, one per byte value (Radford et al. 2019,
/// "Language Models are Unsupervised Multitask Learners", Sec. 2.2); its vocabulary must
/// hold more than these.
pub const BYTE_LEVEL_TOKENS: f64 = 256.0;

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let (Some(tokenizer), Some(model)) = (exp.record("tokenizer"), exp.record("model")) else {
        return;
    };
    let (Some(tok_vocab), Some(model_vocab)) = (tokenizer.num("vocab"), model.num("vocab")) else {
        return;
    };
    if tokenizer.kind == "bpe" && tok_vocab <= BYTE_LEVEL_TOKENS {
        out.push(
            Diagnostic::new(
                codes::TOKENIZER_TOO_SMALL,
                format!("a byte-level BPE of {tok_vocab} tokens has no room for merges beyond the 256 byte tokens"),
            )
            .at(at(tokenizer, "vocab", exp), format!("{tok_vocab} tokens"))
            .help("give the tokenizer more than 256 tokens (and the model as many embedding rows)"),
        );
        return;
    }
    if tok_vocab > model_vocab {
        out.push(
            Diagnostic::new(codes::TOKENIZER_VOCAB, format!("the tokenizer's {tok_vocab} tokens do not fit the model's {model_vocab}-row embedding"))
                .at(at(tokenizer, "vocab", exp), format!("{tok_vocab} tokens"))
                .label(at(model, "vocab", exp), format!("model vocab {model_vocab}"))
                .help(format!("set the model's `vocab = {tok_vocab}` (or more), or train a tokenizer of at most {model_vocab} tokens")),
        );
        return;
    }
    let tensor = exp
        .record("parallel")
        .and_then(|p| p.num("tensor"))
        .unwrap_or(1.0);
    let multiple = VOCAB_PAD_MULTIPLE * tensor;
    let padded = (tok_vocab / multiple).ceil() * multiple;
    if model_vocab > padded {
        out.push(
            Diagnostic::new(
                codes::VOCAB_PADDING,
                format!("the model's vocab of {model_vocab} leaves {} embedding rows no token uses", model_vocab - tok_vocab),
            )
            .at(at(model, "vocab", exp), format!("vocab {model_vocab}"))
            .label(at(tokenizer, "vocab", exp), format!("tokenizer {tok_vocab}"))
            .help(format!("set the model's `vocab = {tok_vocab}` (engines pad it to {padded}), or a tokenizer of {model_vocab} tokens")),
        );
    }
}
