//! The owned syntax tree with spans: what the parser hands to every later stage.

use crate::span::Span;

/// A parsed file: its imports and declarations in source order, and its comments.
#[derive(Clone, Debug, Default)]
pub struct File {
    pub items: Vec<Item>,
    pub comments: Vec<Comment>,
}

#[derive(Clone, Debug)]
pub enum Item {
    Import(Import),
    Decl(Decl),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Import(i) => i.span,
            Item::Decl(d) => d.span,
        }
    }
}

/// A `# …` comment; `text` includes the `#`.
#[derive(Clone, Debug)]
pub struct Comment {
    pub text: String,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Import {
    pub target: ImportTarget,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ImportTarget {
    /// `import std.models.llama3_8b`: the segments after `std`, or another dotted path.
    Module(Vec<Ident>),
    /// `import "common/data.kiln"`: a file relative to the importing one.
    File(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `KIND NAME { … }` at the top level.
#[derive(Clone, Debug)]
pub struct Decl {
    pub kind: Ident,
    pub name: Ident,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Block {
    pub entries: Vec<Entry>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum Entry {
    /// `key = value`, or `key { … }` when `value` is a block.
    Field { key: Ident, value: Expr, span: Span },
    /// `kind name { … }` inside a block, such as `source web { … }`.
    Named {
        kind: Ident,
        name: Ident,
        body: Block,
        span: Span,
    },
}

impl Entry {
    pub fn span(&self) -> Span {
        match self {
            Entry::Field { span, .. } | Entry::Named { span, .. } => *span,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    /// `16M tokens`: `literal` is the number with its attached suffix as written (`16M`),
    /// `unit` the separate unit word (`tokens`), if any.
    Quantity {
        literal: String,
        unit: Option<String>,
    },
    Str(String),
    Bool(bool),
    Auto,
    /// `llama3_8b`, `bf16_mixed`, `model.params`.
    Path(Vec<Ident>),
    /// `cosine { peak = 3e-4 }`, `llama3_8b { seq_len = 8192 }`.
    Construct {
        name: Ident,
        body: Block,
    },
    Block(Block),
    List(Vec<Expr>),
    Neg(Box<Expr>),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `( … )`, kept so that `kiln fmt` prints what was written.
    Paren(Box<Expr>),
}
