//! `kiln fmt`: prints an AST back in the canonical layout, keeping every comment.
//!
//! The layout is a function of the tree alone (plus where blank lines and comments were), so
//! formatting is idempotent: a block prints on one line when it has no named entries and no
//! comments and fits in [`WIDTH`] columns, otherwise one entry per line, indented by two spaces.

use super::ast::*;
use super::parse::escape;

/// The column a one-line block may not pass.
pub const WIDTH: usize = 100;
const INDENT: &str = "  ";

/// Formats a parsed file; `text` is the source it was parsed from.
pub fn format(file: &File, text: &str) -> String {
    let mut p = Printer {
        text,
        comments: &file.comments,
        next_comment: 0,
        out: String::new(),
        last_end: 0,
        trailing_at: Vec::new(),
    };
    for (i, item) in file.items.iter().enumerate() {
        let start = item.span().start as usize;
        let blank =
            i > 0 && (matches!(item, Item::Decl(_)) || matches!(file.items[i - 1], Item::Decl(_)));
        p.leading(start, 0, blank);
        match item {
            Item::Import(import) => {
                p.out += "import ";
                match &import.target {
                    ImportTarget::Module(path) => p.out += &join(path),
                    ImportTarget::File(f) => p.out += &escape(f),
                }
                p.last_end = import.span.end as usize;
            }
            Item::Decl(decl) => {
                p.out += &format!("{} {} ", decl.kind.name, decl.name.name);
                p.block(&decl.body, 0, true);
            }
        }
        p.trailing();
        p.out.push('\n');
    }
    p.leading(text.len(), 0, !file.items.is_empty());
    let out = align_trailing(p.out.trim_end(), &p.trailing_at);
    if out.is_empty() {
        out
    } else {
        out + "\n"
    }
}

/// Aligns the trailing comments of consecutive lines at the same indentation in one column,
/// two spaces after the longest line of code among them (as gofmt does). `trailing_at` holds
/// (line, byte column) where each trailing comment starts, in order: positions, not a marker
/// character, since a comment or a string may hold any character.
fn align_trailing(text: &str, trailing_at: &[(usize, usize)]) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let starts: std::collections::HashMap<usize, usize> = trailing_at.iter().copied().collect();
    let split = |i: usize| -> Option<(&str, &str)> {
        let at = *starts.get(&i)?;
        let line = lines[i];
        line.is_char_boundary(at.min(line.len()))
            .then(|| line.split_at(at.min(line.len())))
    };
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let indent = |l: &str| l.len() - l.trim_start().len();
        let mut j = i;
        while j < lines.len() && split(j).is_some() && indent(lines[j]) == indent(lines[i]) {
            j += 1;
        }
        if j == i {
            out.push(lines[i].to_string());
            i += 1;
            continue;
        }
        let width = (i..j)
            .filter_map(split)
            .map(|(code, _)| code.chars().count())
            .max()
            .unwrap_or(0);
        for (k, line) in lines.iter().enumerate().take(j).skip(i) {
            let (code, comment) = split(k).unwrap_or((line, ""));
            out.push(format!("{code:<width$}  {comment}"));
        }
        i = j;
    }
    out.join("\n")
}

struct Printer<'a> {
    text: &'a str,
    comments: &'a [Comment],
    next_comment: usize,
    out: String,
    /// Source offset of the end of the last thing printed.
    last_end: usize,
    /// (line, byte column) in `out` where each trailing comment starts.
    trailing_at: Vec<(usize, usize)>,
}

fn join(path: &[Ident]) -> String {
    path.iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(".")
}

impl Printer<'_> {
    fn column(&self) -> usize {
        self.out.len() - self.out.rfind('\n').map_or(0, |i| i + 1)
    }

    /// A blank line in the source between the last printed thing and `pos`.
    fn blank_before(&self, pos: usize) -> bool {
        let lines: Vec<&str> = self.text[self.last_end.min(pos)..pos].split('\n').collect();
        lines.len() > 2
            && lines[1..lines.len() - 1]
                .iter()
                .any(|l| l.trim().is_empty())
    }

    /// Prints the comments that stand before `pos` on their own lines, then indents for the
    /// thing at `pos`. `blank` forces a blank line before it (between declarations).
    fn leading(&mut self, pos: usize, depth: usize, mut blank: bool) {
        while let Some(c) = self.comments.get(self.next_comment) {
            if c.span.start as usize >= pos {
                break;
            }
            if blank || self.blank_before(c.span.start as usize) {
                self.blank_line();
            }
            blank = false;
            self.out += &INDENT.repeat(depth);
            self.out += &c.text;
            self.out.push('\n');
            self.last_end = c.span.end as usize;
            self.next_comment += 1;
        }
        if blank || self.blank_before(pos) {
            self.blank_line();
        }
        self.out += &INDENT.repeat(depth);
    }

    fn blank_line(&mut self) {
        if !self.out.is_empty() && !["\n\n", "{\n", "[\n"].iter().any(|e| self.out.ends_with(e)) {
            self.out.push('\n');
        }
    }

    /// A comment on the same source line as what was just printed.
    fn trailing(&mut self) {
        if let Some(c) = self.comments.get(self.next_comment) {
            let start = c.span.start as usize;
            if start >= self.last_end && !self.text[self.last_end..start].contains('\n') {
                let line = self.out.bytes().filter(|&b| b == b'\n').count();
                self.trailing_at.push((line, self.column()));
                self.out += &c.text;
                self.last_end = c.span.end as usize;
                self.next_comment += 1;
            }
        }
    }

    fn has_comments_in(&self, span: crate::span::Span) -> bool {
        self.comments[self.next_comment..]
            .iter()
            .any(|c| c.span.start >= span.start && c.span.start < span.end)
    }

    fn block(&mut self, block: &Block, depth: usize, force_lines: bool) {
        if block.entries.is_empty() && !self.has_comments_in(block.span) {
            self.out += "{}";
            self.last_end = block.span.end as usize;
            return;
        }
        if !force_lines && !self.has_comments_in(block.span) {
            if let Some(line) = inline_block(block) {
                if self.column() + line.len() <= WIDTH {
                    self.out += &line;
                    self.last_end = block.span.end as usize;
                    return;
                }
            }
        }
        self.out.push('{');
        self.last_end = block.span.start as usize + 1;
        self.trailing();
        self.out.push('\n');
        for entry in &block.entries {
            self.leading(entry.span().start as usize, depth + 1, false);
            match entry {
                Entry::Field { key, value, .. } => {
                    self.out += &key.name;
                    if let ExprKind::Block(b) = &value.kind {
                        self.out.push(' ');
                        self.block(b, depth + 1, false);
                    } else {
                        self.out += " = ";
                        self.expr(value, depth + 1);
                    }
                }
                Entry::Named {
                    kind, name, body, ..
                } => {
                    self.out += &format!("{} {} ", kind.name, name.name);
                    self.block(body, depth + 1, false);
                }
            }
            self.last_end = self.last_end.max(entry.span().end as usize);
            self.trailing();
            self.out.push('\n');
        }
        let close = (block.span.end as usize).saturating_sub(1);
        self.leading(close, depth + 1, false);
        self.close_line(depth);
        self.out.push('}');
        self.last_end = block.span.end as usize;
    }

    /// `leading` indented for a line of content; the closing bracket goes on a line of its
    /// own, at its block's depth, with no blank line before it.
    fn close_line(&mut self, depth: usize) {
        let trimmed = self.out.trim_end().len();
        self.out.truncate(trimmed);
        self.out.push('\n');
        self.out += &INDENT.repeat(depth);
    }

    fn expr(&mut self, expr: &Expr, depth: usize) {
        match &expr.kind {
            ExprKind::Block(b) => self.block(b, depth, false),
            ExprKind::Construct { name, body } => {
                self.out += &name.name;
                self.out.push(' ');
                self.block(body, depth, false);
            }
            ExprKind::List(items)
                if self.has_comments_in(expr.span)
                    || self.column() + inline_expr(expr).map_or(usize::MAX, |s| s.len())
                        > WIDTH =>
            {
                self.out.push('[');
                self.last_end = expr.span.start as usize + 1;
                self.trailing();
                self.out.push('\n');
                for item in items {
                    self.leading(item.span.start as usize, depth + 1, false);
                    self.expr(item, depth + 1);
                    self.out.push(',');
                    self.last_end = self.last_end.max(item.span.end as usize);
                    self.trailing();
                    self.out.push('\n');
                }
                self.leading((expr.span.end as usize).saturating_sub(1), depth + 1, false);
                self.close_line(depth);
                self.out.push(']');
            }
            ExprKind::Binary { op, lhs, rhs } => {
                self.expr(lhs, depth);
                self.out += &format!(" {} ", op.symbol());
                self.expr(rhs, depth);
            }
            ExprKind::Neg(inner) => {
                self.out.push('-');
                self.expr(inner, depth);
            }
            ExprKind::Paren(inner) => {
                self.out.push('(');
                self.expr(inner, depth);
                self.out.push(')');
            }
            _ => self.out += &inline_expr(expr).expect("leaf expressions always print on one line"),
        }
        self.last_end = self.last_end.max(expr.span.end as usize);
    }
}

/// The one-line form of a block, if it has one (no named entries).
fn inline_block(block: &Block) -> Option<String> {
    let mut parts = Vec::new();
    for entry in &block.entries {
        match entry {
            Entry::Field { key, value, .. } => match &value.kind {
                ExprKind::Block(b) => parts.push(format!("{} {}", key.name, inline_block(b)?)),
                _ => parts.push(format!("{} = {}", key.name, inline_expr(value)?)),
            },
            Entry::Named { .. } => return None,
        }
    }
    Some(if parts.is_empty() {
        "{}".into()
    } else {
        format!("{{ {} }}", parts.join(", "))
    })
}

/// The one-line form of an expression, if it has one.
fn inline_expr(expr: &Expr) -> Option<String> {
    Some(match &expr.kind {
        ExprKind::Quantity { literal, unit } => match unit {
            Some(u) => format!("{literal} {u}"),
            None => literal.clone(),
        },
        ExprKind::Str(s) => escape(s),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Auto => "auto".into(),
        ExprKind::Path(p) => join(p),
        ExprKind::Construct { name, body } => format!("{} {}", name.name, inline_block(body)?),
        ExprKind::Block(b) => inline_block(b)?,
        ExprKind::List(items) => {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(inline_expr)
                    .collect::<Option<Vec<_>>>()?
                    .join(", ")
            )
        }
        ExprKind::Neg(e) => format!("-{}", inline_expr(e)?),
        ExprKind::Binary { op, lhs, rhs } => format!(
            "{} {} {}",
            inline_expr(lhs)?,
            op.symbol(),
            inline_expr(rhs)?
        ),
        ExprKind::Paren(e) => format!("({})", inline_expr(e)?),
    })
}
