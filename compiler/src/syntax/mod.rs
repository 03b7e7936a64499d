//! Syntax: the owned AST, the pest parser that builds it, and the formatter that prints it.

pub mod ast;
pub mod fmt;
pub mod parse;

pub use parse::parse;
