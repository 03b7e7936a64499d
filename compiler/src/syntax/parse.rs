//! The parser: pest grammar in, owned AST out. The only module that sees `pest::Pair`.

use super::ast::*;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::span::{FileId, Span};
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser as _;
use std::sync::OnceLock;

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/kiln.pest"]
struct KilnParser;

/// Blocks, lists and parentheses nested deeper than this are refused before pest sees them,
/// so that no input can overflow the stack of the parser or of any later recursive stage.
pub const MAX_NESTING: usize = 32;
/// Operators in one expression; bounds the depth of the expression tree.
pub const MAX_OPERATORS: usize = 256;

/// Parses one file. Never panics; on a syntax error returns `Err` with one diagnostic.
pub fn parse(file: FileId, text: &str) -> Result<File, Diagnostic> {
    check_nesting(file, text)?;
    let mut pairs = KilnParser::parse(Rule::file, text).map_err(|e| syntax_error(file, text, e))?;
    let b = Builder { file };
    let mut items = Vec::new();
    for pair in pairs
        .next()
        .expect("the file rule always yields one pair")
        .into_inner()
    {
        match pair.as_rule() {
            Rule::import => items.push(Item::Import(b.import(pair))),
            Rule::decl => items.push(Item::Decl(b.decl(pair)?)),
            Rule::EOI => {}
            r => unreachable!("file holds imports and declarations, not {r:?}"),
        }
    }
    Ok(File {
        items,
        comments: comments(file, text),
    })
}

/// What a character of the source is part of, for the scans that run before pest.
#[derive(Clone, Copy, PartialEq)]
enum Lexical {
    Code,
    /// Inside a string literal, quotes included.
    Str,
    /// Inside a `#` comment, up to the end of the line.
    Comment,
}

/// Classifies every character, the way the grammar reads strings and comments.
fn lexical(text: &str) -> impl Iterator<Item = (usize, char, Lexical)> + '_ {
    let (mut in_string, mut in_comment, mut escaped) = (false, false, false);
    text.char_indices().map(move |(i, c)| {
        let class = if in_comment {
            in_comment = c != '\n';
            if c == '\n' {
                Lexical::Code
            } else {
                Lexical::Comment
            }
        } else if in_string {
            in_string = (escaped || c != '"') && c != '\n';
            escaped = c == '\\' && !escaped;
            Lexical::Str
        } else {
            in_comment = c == '#';
            in_string = c == '"';
            escaped = false;
            match c {
                '#' => Lexical::Comment,
                '"' => Lexical::Str,
                _ => Lexical::Code,
            }
        };
        (i, c, class)
    })
}

/// Refuses input nested deeper than [`MAX_NESTING`].
fn check_nesting(file: FileId, text: &str) -> Result<(), Diagnostic> {
    let mut depth = 0usize;
    for (i, c, class) in lexical(text) {
        match (c, class) {
            ('{' | '[' | '(', Lexical::Code) => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Diagnostic::new(codes::TOO_DEEP, "nesting is too deep")
                        .at(
                            Span::new(file, i, i + 1),
                            format!("more than {MAX_NESTING} levels deep here"),
                        )
                        .help("flatten the blocks; real experiments nest four or five levels"));
                }
            }
            ('}' | ']' | ')', Lexical::Code) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Every `#` comment in the file, for `kiln fmt`.
fn comments(file: FileId, text: &str) -> Vec<Comment> {
    let mut out: Vec<Comment> = Vec::new();
    let mut open: Option<usize> = None;
    for (i, _, class) in lexical(text).chain(std::iter::once((text.len(), '\n', Lexical::Code))) {
        match (class, open) {
            (Lexical::Comment, None) => open = Some(i),
            (Lexical::Comment, Some(_)) => {}
            (_, Some(start)) => {
                let text = text[start..i].trim_end();
                out.push(Comment {
                    text: text.to_string(),
                    span: Span::new(file, start, start + text.len()),
                });
                open = None;
            }
            (_, None) => {}
        }
    }
    out
}

fn syntax_error(file: FileId, text: &str, e: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let found = match text[pos..].chars().next() {
        None => "the end of the file".to_string(),
        Some(c) if c.is_whitespace() => "whitespace".to_string(),
        Some(_) => {
            let token: String = text[pos..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .take(20)
                .collect();
            if token.is_empty() {
                format!("`{}`", text[pos..].chars().next().unwrap_or(' '))
            } else {
                format!("`{token}`")
            }
        }
    };
    let end = (pos + text[pos..].chars().next().map_or(0, |c| c.len_utf8())).max(pos);
    let expected = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut words: Vec<&str> = positives.iter().map(|r| words(*r)).collect();
            words.sort();
            words.dedup();
            // After a key, the literal `=` is expected too; pest names only rules.
            if words == ["`{`", "a name"] {
                words = vec!["`=`", "`{`", "a name"];
            }
            match words.len() {
                0 => "something else".to_string(),
                1 => words[0].to_string(),
                n => format!("{} or {}", words[..n - 1].join(", "), words[n - 1]),
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    if let Some(d) = special_syntax_error(file, text, pos) {
        return d;
    }
    Diagnostic::new(codes::SYNTAX, format!("expected {expected}, found {found}"))
        .at(Span::new(file, pos, end), format!("expected {expected}"))
        .help(help_for(&e, text[pos..].chars().next()))
}

/// The syntax errors that deserve their own words: an unclosed bracket, an unterminated
/// string, an unknown escape.
fn special_syntax_error(file: FileId, text: &str, pos: usize) -> Option<Diagnostic> {
    let rest = &text[pos..];
    if rest.trim().is_empty() {
        let (open, at) = unclosed(text)?;
        let close = match open {
            '{' => '}',
            '[' => ']',
            _ => ')',
        };
        return Some(
            Diagnostic::new(codes::SYNTAX, format!("unclosed `{open}`"))
                .at(
                    Span::new(file, at, at + 1),
                    format!("this `{open}` is never closed"),
                )
                .help(format!("add `{close}` where the block ends")),
        );
    }
    if rest.starts_with('"') {
        let line = rest
            .strip_prefix('"')
            .unwrap_or(rest)
            .split('\n')
            .next()
            .unwrap_or("");
        let mut chars = line.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return None,
                '\\' => match chars.next() {
                    Some((_, '"' | '\\' | 'n' | 't')) => {}
                    other => {
                        let start = pos + 1 + i;
                        let end = start + 1 + other.map_or(0, |(_, c)| c.len_utf8());
                        return Some(
                            Diagnostic::new(codes::SYNTAX, "unknown escape in a string")
                                .at(Span::new(file, start, end), "not an escape kiln knows")
                                .help("the escapes are \\\" \\\\ \\n \\t; write `\\\\` for a backslash, or use `/` in paths"),
                        );
                    }
                },
                _ => {}
            }
        }
        return Some(
            Diagnostic::new(codes::SYNTAX, "unterminated string")
                .at(
                    Span::new(file, pos, pos + 1 + line.len()),
                    "this string has no closing `\"`",
                )
                .help("close the string with `\"` on the same line"),
        );
    }
    None
}

/// The innermost bracket left open at the end of the text.
fn unclosed(text: &str) -> Option<(char, usize)> {
    let mut stack = Vec::new();
    for (i, c, class) in lexical(text) {
        match (c, class) {
            ('{' | '[' | '(', Lexical::Code) => stack.push((c, i)),
            ('}' | ']' | ')', Lexical::Code) => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.pop()
}

fn help_for(e: &pest::error::Error<Rule>, found: Option<char>) -> String {
    use pest::error::ErrorVariant;
    if found == Some(':') {
        return "fields are written `name = value`, not `name: value`".into();
    }
    if let ErrorVariant::ParsingError { positives, .. } = &e.variant {
        if positives.contains(&Rule::block)
            && positives.len() == 1
            && !positives.contains(&Rule::decl)
        {
            return "after a name comes `= value` for a field, `{ … }` for a block, or `NAME { … }` for a named entry; at the top level, a declaration is `KIND NAME { … }`".into();
        }
        if positives.contains(&Rule::expr) {
            return "a field needs a value after `=`: a quantity (`8B`, `80GB`), a string, a name, a list or a block".into();
        }
        if positives.contains(&Rule::block) {
            return "a declaration is `KIND NAME { FIELDS }`, such as `model tiny { layers = 4 }`"
                .into();
        }
    }
    "see docs/language.md for the forms kiln accepts".into()
}

/// What a grammar rule is called in a message.
fn words(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "the end of the file",
        Rule::file | Rule::decl | Rule::item => "a declaration such as `experiment NAME { … }`",
        Rule::import => "`import`",
        Rule::import_path => "a module path such as `std.models.llama3_8b`",
        Rule::block => "`{`",
        Rule::field | Rule::named | Rule::block_field | Rule::entries | Rule::entry => "a field",
        Rule::expr | Rule::quantity | Rule::number_lit | Rule::number => "a value",
        Rule::prefix | Rule::infix | Rule::term => "a value",
        Rule::neg | Rule::add | Rule::sub | Rule::mul | Rule::div => "an operator",
        Rule::list => "a list",
        Rule::construct => "a constructor",
        Rule::path => "a name",
        Rule::auto => "`auto`",
        Rule::boolean => "`true` or `false`",
        Rule::suffix | Rule::unit_word | Rule::unit_name => "a unit",
        Rule::string | Rule::string_inner => "a string",
        Rule::ident | Rule::keyword | Rule::ident_char => "a name",
        Rule::WHITESPACE | Rule::COMMENT => "whitespace",
    }
}

fn pratt() -> &'static PrattParser<Rule> {
    static PRATT: OnceLock<PrattParser<Rule>> = OnceLock::new();
    PRATT.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
            .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
            .op(Op::prefix(Rule::neg))
    })
}

struct Builder {
    file: FileId,
}

impl Builder {
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, s.start(), s.end())
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        debug_assert_eq!(pair.as_rule(), Rule::ident);
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(&pair),
        }
    }

    fn import(&self, pair: Pair<Rule>) -> Import {
        debug_assert_eq!(pair.as_rule(), Rule::import);
        let span = self.span(&pair);
        let inner = pair.into_inner().next().expect("import has a target");
        let target = match inner.as_rule() {
            Rule::import_path => {
                ImportTarget::Module(inner.into_inner().map(|p| self.ident(p)).collect())
            }
            Rule::string => ImportTarget::File(unescape(inner.into_inner().as_str())),
            r => unreachable!("import target {r:?}"),
        };
        Import { target, span }
    }

    fn decl(&self, pair: Pair<Rule>) -> Result<Decl, Diagnostic> {
        debug_assert_eq!(pair.as_rule(), Rule::decl);
        let mut inner = pair.into_inner();
        let kind = self.ident(inner.next().expect("kind"));
        let name = self.ident(inner.next().expect("name"));
        let body = self.block(inner.next().expect("body"))?;
        let span = kind.span.to(body.span);
        Ok(Decl {
            kind,
            name,
            body,
            span,
        })
    }

    fn block(&self, pair: Pair<Rule>) -> Result<Block, Diagnostic> {
        debug_assert_eq!(pair.as_rule(), Rule::block);
        let span = self.span(&pair);
        let mut entries = Vec::new();
        for entry in pair.into_inner() {
            let rule = entry.as_rule();
            let mut inner = entry.into_inner();
            entries.push(match rule {
                Rule::field => {
                    let key = self.ident(inner.next().expect("key"));
                    let value = self.expr(inner.next().expect("value"))?;
                    let span = key.span.to(value.span);
                    Entry::Field { key, value, span }
                }
                Rule::block_field => {
                    let key = self.ident(inner.next().expect("key"));
                    let body = inner.next().expect("block");
                    let bspan = self.span(&body);
                    let value = Expr {
                        kind: ExprKind::Block(self.block(body)?),
                        span: bspan,
                    };
                    let span = key.span.to(bspan);
                    Entry::Field { key, value, span }
                }
                Rule::named => {
                    let kind = self.ident(inner.next().expect("kind"));
                    let name = self.ident(inner.next().expect("name"));
                    let body = self.block(inner.next().expect("body"))?;
                    let span = kind.span.to(body.span);
                    Entry::Named {
                        kind,
                        name,
                        body,
                        span,
                    }
                }
                r => unreachable!("block entry {r:?}"),
            });
        }
        Ok(Block { entries, span })
    }

    fn expr(&self, pair: Pair<Rule>) -> Result<Expr, Diagnostic> {
        debug_assert_eq!(pair.as_rule(), Rule::expr);
        let span = self.span(&pair);
        let operators = pair
            .clone()
            .into_inner()
            .filter(|p| {
                matches!(
                    p.as_rule(),
                    Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::neg
                )
            })
            .count();
        if operators > MAX_OPERATORS {
            return Err(Diagnostic::new(codes::TOO_DEEP, "expression is too long")
                .at(
                    span,
                    format!("{operators} operators; at most {MAX_OPERATORS}"),
                )
                .help("split the expression, or write the number"));
        }
        pratt()
            .map_primary(|p| self.primary(p))
            .map_prefix(|op, rhs| {
                let rhs = rhs?;
                let span = self.span(&op).to(rhs.span);
                Ok(Expr {
                    kind: ExprKind::Neg(Box::new(rhs)),
                    span,
                })
            })
            .map_infix(|lhs, op, rhs| {
                let (lhs, rhs) = (lhs?, rhs?);
                let op = match op.as_rule() {
                    Rule::add => BinOp::Add,
                    Rule::sub => BinOp::Sub,
                    Rule::mul => BinOp::Mul,
                    Rule::div => BinOp::Div,
                    r => unreachable!("operator {r:?}"),
                };
                let span = lhs.span.to(rhs.span);
                Ok(Expr {
                    kind: ExprKind::Binary {
                        op,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                    span,
                })
            })
            .parse(pair.into_inner())
    }

    fn primary(&self, pair: Pair<Rule>) -> Result<Expr, Diagnostic> {
        let span = self.span(&pair);
        let kind = match pair.as_rule() {
            Rule::expr => ExprKind::Paren(Box::new(self.expr(pair)?)),
            Rule::quantity => {
                let mut inner = pair.into_inner();
                let literal = inner.next().expect("number").as_str().to_string();
                let unit = inner.next().map(|u| u.as_str().to_string());
                ExprKind::Quantity { literal, unit }
            }
            Rule::string => ExprKind::Str(unescape(pair.into_inner().as_str())),
            Rule::boolean => ExprKind::Bool(pair.as_str() == "true"),
            Rule::auto => ExprKind::Auto,
            Rule::path => ExprKind::Path(pair.into_inner().map(|p| self.ident(p)).collect()),
            Rule::list => ExprKind::List(
                pair.into_inner()
                    .map(|p| self.expr(p))
                    .collect::<Result<_, _>>()?,
            ),
            Rule::construct => {
                let mut inner = pair.into_inner();
                let head = inner.next().expect("name");
                let name = match head.as_rule() {
                    // `auto { … }` keeps `auto` as its name; resolve.rs reads it.
                    Rule::auto => Ident {
                        name: "auto".to_string(),
                        span: self.span(&head),
                    },
                    _ => self.ident(head),
                };
                let body = self.block(inner.next().expect("body"))?;
                ExprKind::Construct { name, body }
            }
            Rule::block => ExprKind::Block(self.block(pair)?),
            r => unreachable!("primary {r:?}"),
        };
        Ok(Expr { kind, span })
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes a string literal back with escapes (for `kiln fmt`).
pub fn escape(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
