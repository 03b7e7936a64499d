//! Resolution: scopes and imports, presets and overrides, fields checked against the schema
//! with their units, and a provenance for every value. Expressions over other fields and
//! `auto` values are left for derive.rs.

use crate::codes;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::ir::{Provenance, Record, Resolved, Slot, Value};
use crate::load::{ModuleId, Program, STDLIB};
use crate::schema::{self, Const, Fill, KindSpec, NumKind, Shape, Ty};
use crate::span::Span;
use crate::syntax::ast::{Block, Decl, Entry, Expr, ExprKind, Item};
use crate::units::{self, Dim, UnitError};
use std::collections::HashMap;

/// Presets refer to presets (a cluster to a node to a GPU); deeper chains are a mistake.
const MAX_PRESET_DEPTH: usize = 16;

/// Resolves every declaration of the root modules.
pub fn resolve(program: &Program) -> (Vec<Resolved>, Vec<Diagnostic>) {
    let mut r = Resolver {
        program,
        scopes: Vec::new(),
        unsure: Vec::new(),
        diags: Vec::new(),
        depth: 0,
        in_list: 0,
    };
    r.build_scopes();
    let mut out = Vec::new();
    for &root in &program.roots {
        let Some(ast) = &program.modules[root].ast else {
            continue;
        };
        for item in &ast.items {
            if let Item::Decl(decl) = item {
                if let Some(kind) = schema::kind(&decl.kind.name) {
                    let ctx = Ctx {
                        module: root,
                        root: Vec::new(),
                        path: Vec::new(),
                        provenance: Provenance::Declared,
                    };
                    let record = r.fresh(Shape::of(kind), &decl.body, &ctx, Some(decl.name.span));
                    out.push(Resolved {
                        name: decl.name.name.clone(),
                        record: Record {
                            span: Some(decl.span),
                            ..record
                        },
                    });
                }
            }
        }
    }
    (out, r.diags)
}

/// Where values being resolved come from, and what their references are relative to.
#[derive(Clone)]
struct Ctx {
    module: ModuleId,
    /// The path of the declaration root that references in expressions start from.
    root: Vec<String>,
    /// The path of the record being filled, from the top of the tree.
    path: Vec<String>,
    provenance: Provenance,
}

impl Ctx {
    fn child(&self, names: &[&str]) -> Ctx {
        let mut c = self.clone();
        c.path.extend(names.iter().map(|n| n.to_string()));
        c
    }
}

struct Resolver<'p> {
    program: &'p Program,
    /// Per module: every declaration visible by name.
    scopes: Vec<HashMap<String, (ModuleId, &'p Decl)>>,
    /// Per module: names already reported (a declaration of an unknown kind, or a module
    /// with a failed import), whose uses are not reported again.
    unsure: Vec<Option<std::collections::HashSet<String>>>,
    diags: Vec<Diagnostic>,
    depth: usize,
    /// How many lists the value being resolved sits in: derive.rs computes fields, not list
    /// items, so an expression inside a list is folded here.
    in_list: usize,
}

fn decls(program: &Program, module: ModuleId) -> impl Iterator<Item = &Decl> {
    program.modules[module]
        .ast
        .iter()
        .flat_map(|a| a.items.iter())
        .filter_map(|i| match i {
            Item::Decl(d) => Some(d),
            Item::Import(_) => None,
        })
}

impl<'p> Resolver<'p> {
    fn build_scopes(&mut self) {
        let program = self.program;
        for (id, module) in program.modules.iter().enumerate() {
            let mut scope: HashMap<String, (ModuleId, &'p Decl)> = HashMap::new();
            // `None`: every unknown name is unsure (an import of this module failed).
            let mut unsure = if module.failed_imports {
                None
            } else {
                Some(std::collections::HashSet::new())
            };
            for decl in decls(program, id) {
                if schema::kind(&decl.kind.name).is_none() {
                    if let Some(u) = unsure.as_mut() {
                        u.insert(decl.name.name.clone());
                    }
                    let mut d = Diagnostic::new(
                        codes::UNKNOWN_KIND,
                        format!("unknown declaration kind `{}`", decl.kind.name),
                    )
                    .at(decl.kind.span, "not a kind of declaration");
                    d = d.help(
                        match did_you_mean(&decl.kind.name, schema::KINDS.iter().map(|k| k.name)) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!(
                                "the kinds are {}",
                                schema::KINDS
                                    .iter()
                                    .map(|k| k.name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        },
                    );
                    self.diags.push(d);
                    continue;
                }
                if let Some((_, first)) = scope.get(&decl.name.name) {
                    self.diags.push(
                        Diagnostic::new(
                            codes::DUPLICATE_DECLARATION,
                            format!("`{}` is declared twice", decl.name.name),
                        )
                        .at(decl.name.span, "declared again here")
                        .label(first.name.span, "first declared here")
                        .help("rename one of them"),
                    );
                    continue;
                }
                scope.insert(decl.name.name.clone(), (id, decl));
            }
            let own: Vec<String> = scope.keys().cloned().collect();
            for edge in &module.imports {
                let imported: Vec<&Decl> = match &edge.item {
                    Some(item) => {
                        match decls(program, edge.module).find(|d| d.name.name == item.name) {
                            Some(d) => vec![d],
                            None => {
                                let names: Vec<&str> = decls(program, edge.module)
                                    .map(|d| d.name.name.as_str())
                                    .collect();
                                let module_name = program
                                    .sources
                                    .get(program.modules[edge.module].file)
                                    .map(|f| f.name().clone())
                                    .unwrap_or_default();
                                let mut d = Diagnostic::new(
                                    codes::IMPORT_NOT_FOUND,
                                    format!("`{module_name}` has no declaration `{}`", item.name),
                                )
                                .at(item.span, "not declared there");
                                if let Some(s) = did_you_mean(&item.name, names.iter().copied()) {
                                    d = d.help(format!("did you mean `{s}`?"));
                                }
                                self.diags.push(d);
                                unsure = None;
                                continue;
                            }
                        }
                    }
                    None => decls(program, edge.module).collect(),
                };
                for decl in imported {
                    match scope.get(&decl.name.name) {
                        Some((_, existing)) if std::ptr::eq(*existing, decl) => {}
                        Some((_, existing)) => {
                            let mut d = Diagnostic::new(
                                codes::DUPLICATE_DECLARATION,
                                format!(
                                    "`{}` is imported here but already declared",
                                    decl.name.name
                                ),
                            )
                            .at(edge.span, "imports another declaration of the same name")
                            .help(
                                "rename the local declaration, or import only the names you need",
                            );
                            if own.contains(&decl.name.name) {
                                d = d.label(existing.name.span, "declared here");
                            }
                            self.diags.push(d);
                        }
                        None => {
                            scope.insert(decl.name.name.clone(), (edge.module, decl));
                        }
                    }
                }
            }
            self.scopes.push(scope);
            self.unsure.push(unsure);
        }
    }

    /// A record from a block, with the shape's defaults filled in.
    fn fresh(&mut self, shape: Shape, block: &Block, ctx: &Ctx, head: Option<Span>) -> Record {
        self.fresh_as(shape.kind, shape, block, ctx, head)
    }

    /// [`Self::fresh`] for a record named other than its shape (a block, after its field).
    fn fresh_as(
        &mut self,
        kind: &str,
        shape: Shape,
        block: &Block,
        ctx: &Ctx,
        head: Option<Span>,
    ) -> Record {
        let mut record = Record {
            kind: kind.to_string(),
            span: Some(block.span),
            ..Record::default()
        };
        self.entries(&mut record, shape, block, ctx);
        self.defaults(&mut record, shape, head.unwrap_or(block.span));
        record
    }

    fn defaults(&mut self, record: &mut Record, shape: Shape, at: Span) {
        for field in shape.fields {
            if record.fields.contains_key(field.name) {
                continue;
            }
            let value = match field.default {
                Fill::Required | Fill::RequiredOrAuto => {
                    self.diags.push(
                        Diagnostic::new(
                            codes::MISSING_FIELD,
                            format!(
                                "{} is missing the field `{}`",
                                describe_record(record),
                                field.name
                            ),
                        )
                        .at(at, format!("needs `{}`", field.name))
                        .help(format!(
                            "add `{} = …` ({})",
                            field.name,
                            field.ty.describe()
                        )),
                    );
                    continue;
                }
                Fill::Optional => continue,
                Fill::Auto | Fill::Derived => Value::Auto,
                Fill::Value(c) | Fill::Searched(c) => self.constant(c, field, at),
            };
            record.fields.insert(
                field.name.to_string(),
                Slot {
                    value,
                    provenance: Provenance::Default,
                    span: None,
                },
            );
        }
    }

    fn constant(&mut self, c: Const, field: &schema::FieldSpec, at: Span) -> Value {
        match (c, &field.ty) {
            (Const::Num(v), Ty::Num(dim, _)) => Value::Num(v, *dim),
            (Const::Bool(b), _) => Value::Bool(b),
            (Const::Str(s), _) => Value::Str(s.to_string()),
            (Const::Sym(s), Ty::Variant(vs)) => {
                let v = vs
                    .iter()
                    .find(|v| v.name == s)
                    .expect("a default names one of its variants");
                let mut record = Record {
                    kind: s.to_string(),
                    ..Record::default()
                };
                self.defaults(&mut record, Shape::fields(v.name, v.fields), at);
                Value::Record(record)
            }
            (Const::Sym(s), Ty::Preset(kind)) => self
                .std_preset(kind, s, field.name, Provenance::Default)
                .map_or(Value::Invalid, Value::Record),
            (Const::Sym(s), _) => Value::Sym(s.to_string()),
            (Const::Empty, Ty::Block(fields)) => {
                let mut record = Record {
                    kind: field.name.to_string(),
                    ..Record::default()
                };
                self.defaults(&mut record, Shape::fields("block", fields), at);
                Value::Record(record)
            }
            (Const::Empty, _) => Value::List(Vec::new()),
            (Const::Num(v), _) => Value::Num(v, Dim::Count),
        }
    }

    /// Resolves a block's entries into `record`, replacing what a preset set.
    fn entries(&mut self, record: &mut Record, shape: Shape, block: &Block, ctx: &Ctx) {
        let mut seen: HashMap<String, Span> = HashMap::new();
        for entry in &block.entries {
            match entry {
                Entry::Field { key, value, .. } => {
                    if let Some(first) = seen.insert(key.name.clone(), key.span) {
                        // Neither value is trusted: checks that need the field skip it.
                        if let Some(slot) = record.fields.get_mut(&key.name) {
                            slot.value = Value::Invalid;
                        }
                        self.diags.push(
                            Diagnostic::new(
                                codes::DUPLICATE_FIELD,
                                format!("`{}` is set twice", key.name),
                            )
                            .at(key.span, "set again here")
                            .label(first, "first set here")
                            .help("keep one of them"),
                        );
                        continue;
                    }
                    let ty = match shape.field(&key.name) {
                        Some(field) if matches!(field.default, Fill::Derived) => {
                            self.diags.push(
                                Diagnostic::new(
                                    codes::DERIVED_FIELD,
                                    format!("`{}` is derived by kiln and cannot be set", key.name),
                                )
                                .at(key.span, "derived field")
                                .help(derived_help(&key.name)),
                            );
                            continue;
                        }
                        Some(field) => (field.ty, field.default, field.name),
                        None => match shape.free_keys {
                            Some(ty) if !shape.fields.iter().any(|f| f.name == key.name) => {
                                (ty, Fill::Optional, "")
                            }
                            _ => {
                                self.unknown_field(shape, record, &key.name, key.span);
                                continue;
                            }
                        },
                    };
                    let (ty, default, _) = ty;
                    // A rejected value is kept as `Invalid`: the field is not reported missing, a
                    // preset's value does not stand in for it, and later checks skip it.
                    let v = self
                        .value(value, &ty, default, &key.name, ctx)
                        .unwrap_or(Value::Invalid);
                    record.fields.insert(
                        key.name.clone(),
                        Slot {
                            value: v,
                            provenance: ctx.provenance.clone(),
                            span: Some(value.span),
                        },
                    );
                }
                Entry::Named {
                    kind,
                    name,
                    body,
                    span,
                } => {
                    let Some(spec) = shape.named.iter().find(|k| k.name == kind.name) else {
                        let mut d = Diagnostic::new(
                            codes::UNKNOWN_KIND,
                            format!(
                                "{} has no entries of kind `{}`",
                                describe_record(record),
                                kind.name
                            ),
                        )
                        .at(kind.span, "unknown kind of entry");
                        let names: Vec<&str> = shape.named.iter().map(|k| k.name).collect();
                        d = d.help(
                            if let Some(s) = did_you_mean(&kind.name, names.iter().copied()) {
                                format!("did you mean `{s} {} {{ … }}`?", name.name)
                            } else if shape.field(&kind.name).is_some() {
                                format!(
                                    "`{}` is a field: write `{} = …` or `{} {{ … }}`",
                                    kind.name, kind.name, kind.name
                                )
                            } else if names.is_empty() {
                                format!("a {} holds only fields", shape.kind)
                            } else {
                                format!("the named entries here are {}", names.join(", "))
                            },
                        );
                        self.diags.push(d);
                        continue;
                    };
                    let entries = record.named.entry(kind.name.clone()).or_default();
                    if let Some((_, first)) = entries.get(&name.name) {
                        let first = *first;
                        self.diags.push(
                            Diagnostic::new(
                                codes::DUPLICATE_FIELD,
                                format!("{} `{}` is declared twice", kind.name, name.name),
                            )
                            .at(name.span, "declared again here")
                            .label(first, "first declared here")
                            .help("rename one of them, or merge them"),
                        );
                        continue;
                    }
                    let sub = self.fresh(
                        Shape::of(spec),
                        body,
                        &ctx.child(&[&kind.name, &name.name]),
                        Some(name.span),
                    );
                    record
                        .named
                        .entry(kind.name.clone())
                        .or_default()
                        .insert(name.name.clone(), (sub, *span));
                }
            }
        }
    }

    fn unknown_field(&mut self, shape: Shape, record: &Record, name: &str, span: Span) {
        let names: Vec<&str> = shape
            .fields
            .iter()
            .filter(|f| !matches!(f.default, Fill::Derived))
            .map(|f| f.name)
            .collect();
        let mut d = Diagnostic::new(
            codes::UNKNOWN_FIELD,
            format!("{} has no field `{}`", describe_record(record), name),
        )
        .at(span, "unknown field");
        d = d.help(if let Some(s) = did_you_mean(name, names.iter().copied()) {
            format!("did you mean `{s}`?")
        } else if let Some(k) = shape.named.iter().find(|k| k.name == name) {
            format!("`{}` entries are named: `{} NAME {{ … }}`", k.name, k.name)
        } else {
            format!("the fields are {}", names.join(", "))
        });
        self.diags.push(d);
    }

    /// Resolves one value against its field's type; `None` after reporting a problem.
    fn value(
        &mut self,
        expr: &Expr,
        ty: &Ty,
        default: Fill,
        field: &str,
        ctx: &Ctx,
    ) -> Option<Value> {
        if let ExprKind::Auto = expr.kind {
            if matches!(
                default,
                Fill::Auto | Fill::RequiredOrAuto | Fill::Searched(_)
            ) {
                return Some(Value::Auto);
            }
            self.diags.push(
                Diagnostic::new(
                    codes::CANNOT_DERIVE,
                    format!("kiln cannot derive `{field}`"),
                )
                .at(expr.span, "`auto` is not available here")
                .help(format!("write the value ({})", ty.describe())),
            );
            return None;
        }
        if let Ty::NumOr(dim, kind, variants) = ty {
            // A constructor is one of the variants (`ramp { … }`); anything else is the
            // quantity.
            return match &expr.kind {
                ExprKind::Construct { .. } => {
                    self.value(expr, &Ty::Variant(variants), default, field, ctx)
                }
                _ => self.value(expr, &Ty::Num(*dim, *kind), default, field, ctx),
            };
        }
        if let ExprKind::Paren(inner) = &expr.kind {
            if !matches!(ty, Ty::Num(..)) {
                return self.value(inner, ty, default, field, ctx);
            }
        }
        match (ty, &expr.kind) {
            (
                Ty::Num(dim, kind),
                ExprKind::Binary { .. } | ExprKind::Neg(_) | ExprKind::Paren(_) | ExprKind::Path(_),
            ) if self.in_list > 0 => self.fold(expr, *dim, *kind, field),
            (
                Ty::Num(..),
                ExprKind::Binary { .. } | ExprKind::Neg(_) | ExprKind::Paren(_) | ExprKind::Path(_),
            ) => Some(Value::Pending {
                expr: expr.clone(),
                root: ctx.root.clone(),
                module: ctx.module,
            }),
            (Ty::Num(dim, kind), ExprKind::Quantity { literal, unit }) => {
                let (v, found) = self.quantity(literal, unit.as_deref(), expr.span)?;
                let v = check_number(v, found, *dim, *kind, field, expr.span)
                    .map_err(|d| self.diags.push(d))
                    .ok()?;
                Some(Value::Num(v, *dim))
            }
            (Ty::Str, ExprKind::Str(s)) => Some(Value::Str(s.clone())),
            (Ty::Bool, ExprKind::Bool(b)) => Some(Value::Bool(*b)),
            (Ty::Enum(options), ExprKind::Path(path)) if path.len() == 1 => {
                let name = &path[0].name;
                if options.contains(&name.as_str()) {
                    return Some(Value::Sym(name.clone()));
                }
                self.unknown_option(field, name, options.iter().copied(), expr.span);
                None
            }
            (Ty::Name(_), ExprKind::Path(path)) if path.len() == 1 => {
                Some(Value::Sym(path[0].name.clone()))
            }
            (Ty::Variant(variants), ExprKind::Path(path)) if path.len() == 1 => {
                let v = self.variant(variants, &path[0].name, field, expr.span)?;
                let mut record = Record {
                    kind: v.name.to_string(),
                    span: Some(expr.span),
                    ..Record::default()
                };
                self.defaults(&mut record, Shape::fields(v.name, v.fields), expr.span);
                Some(Value::Record(record))
            }
            (Ty::Variant(variants), ExprKind::Construct { name, body }) => {
                let v = self.variant(variants, &name.name, field, name.span)?;
                Some(Value::Record(self.fresh(
                    Shape::fields(v.name, v.fields),
                    body,
                    &ctx.child(&[field]),
                    Some(name.span),
                )))
            }
            (Ty::Preset(kind), ExprKind::Path(path)) if path.len() == 1 => {
                let r = self.preset(kind, &path[0].name, path[0].span, field, ctx)?;
                Some(Value::Record(r))
            }
            (Ty::Preset(kind), ExprKind::Construct { name, body }) if name.name == "auto" => {
                self.auto_model(kind, body, expr.span, field)
            }
            (Ty::Preset(kind), ExprKind::Construct { name, body }) => {
                let mut record = self.preset(kind, &name.name, name.span, field, ctx)?;
                self.entries(&mut record, Shape::of(kind), body, &ctx.child(&[field]));
                Some(Value::Record(record))
            }
            (Ty::Preset(kind), ExprKind::Block(body)) => {
                let record = self.fresh(Shape::of(kind), body, &ctx.child(&[field]), None);
                Some(Value::Record(record))
            }
            (Ty::Block(fields), ExprKind::Block(body)) => {
                // A block is named after its field (`parallel`), which derive.rs's rules use.
                let shape = Shape::fields("block", fields);
                Some(Value::Record(self.fresh_as(
                    field,
                    shape,
                    body,
                    &ctx.child(&[field]),
                    None,
                )))
            }
            (Ty::List(item), ExprKind::List(items)) => {
                self.in_list += 1;
                let values: Vec<Value> = items
                    .iter()
                    .filter_map(|e| self.value(e, item, Fill::Optional, field, ctx))
                    .collect();
                self.in_list -= 1;
                (values.len() == items.len()).then_some(Value::List(values))
            }
            (Ty::List(item), _) => {
                self.in_list += 1;
                let value = self.value(expr, item, Fill::Optional, field, ctx);
                self.in_list -= 1;
                Some(Value::List(vec![value?]))
            }
            (
                Ty::Num(dim, _),
                ExprKind::Str(_)
                | ExprKind::Bool(_)
                | ExprKind::List(_)
                | ExprKind::Block(_)
                | ExprKind::Construct { .. },
            ) => {
                self.wrong_type(
                    field,
                    ty,
                    expr,
                    format!("write a number{}", unit_hint(*dim)),
                );
                None
            }
            (Ty::Enum(options), _) => {
                let help = format!("write one of {} without quotes", options.join(", "));
                self.wrong_type(field, ty, expr, help);
                None
            }
            (Ty::Variant(vs), _) => {
                let help = format!("write a variant such as `{} {{ … }}`", vs[0].name);
                self.wrong_type(field, ty, expr, help);
                None
            }
            (Ty::Preset(kind), _) => {
                let help = format!(
                    "name a {} preset, or write a block `{{ … }}` with its fields",
                    kind.name
                );
                self.wrong_type(field, ty, expr, help);
                None
            }
            _ => {
                let help = format!("`{field}` takes {}", ty.describe());
                self.wrong_type(field, ty, expr, help);
                None
            }
        }
    }

    /// An expression inside a list (`until = -2.87T tokens` in a ramp's stage), computed
    /// now and checked like a field's number: derive.rs computes fields, not list items, so
    /// a list item cannot refer to another field.
    fn fold(&mut self, expr: &Expr, dim: Dim, kind: NumKind, field: &str) -> Option<Value> {
        if let Some(path) = first_reference(expr) {
            self.diags.push(
                Diagnostic::new(
                    codes::CANNOT_DERIVE,
                    format!("a list item cannot refer to `{path}`"),
                )
                .at(expr.span, "reference inside a list")
                .help(format!(
                    "write the number{} (kiln computes references in fields, not in lists)",
                    unit_hint(dim)
                )),
            );
            return None;
        }
        let folded = crate::derive::eval(&Record::default(), expr, &[])
            .map_err(|d| self.diags.extend(d))
            .ok()?;
        let v = check_number(folded.0, folded.1, dim, kind, field, expr.span)
            .map_err(|d| self.diags.push(d))
            .ok()?;
        Some(Value::Num(v, dim))
    }

    fn quantity(&mut self, literal: &str, unit: Option<&str>, span: Span) -> Option<(f64, Dim)> {
        match units::quantity(literal, unit) {
            Ok(q) => Some(q),
            Err(UnitError::Unknown(u)) => {
                let all = [
                    "K", "M", "B", "T", "tokens", "steps", "FLOPs", "TFLOP/s", "GB", "GiB", "TB",
                    "GB/s", "TB/s", "Gb/s", "s", "min", "h", "d", "USD", "%",
                ];
                let mut d = Diagnostic::new(codes::UNKNOWN_UNIT, format!("unknown unit `{u}`"))
                    .at(span, "unknown unit");
                d = d.help(match did_you_mean(&u, all) {
                    Some(s) => {
                        format!("did you mean `{s}`? kiln's units are {}", units::UNIT_WORDS)
                    }
                    None => format!(
                        "kiln's units are {}; magnitudes K, M, B, T",
                        units::UNIT_WORDS
                    ),
                });
                self.diags.push(d);
                None
            }
            Err(UnitError::Twice(q)) => {
                self.diags.push(
                    Diagnostic::new(codes::UNKNOWN_UNIT, format!("`{q}` has two units"))
                        .at(span, "a magnitude or unit too many")
                        .help("write one unit, such as `16GB` or `16M tokens`"),
                );
                None
            }
        }
    }

    fn wrong_type(&mut self, field: &str, ty: &Ty, expr: &Expr, help: String) {
        self.diags.push(
            Diagnostic::new(
                codes::WRONG_TYPE,
                format!(
                    "`{field}` takes {}, not {}",
                    ty.describe(),
                    describe_expr(expr)
                ),
            )
            .at(expr.span, "wrong type")
            .help(help),
        );
    }

    fn unknown_option<'a>(
        &mut self,
        field: &str,
        name: &str,
        options: impl Iterator<Item = &'a str> + Clone,
        span: Span,
    ) {
        let mut d = Diagnostic::new(
            codes::UNKNOWN_NAME,
            format!("`{name}` is not an option of `{field}`"),
        )
        .at(span, "unknown option");
        let list = options.clone().collect::<Vec<_>>().join(", ");
        d = d.help(match did_you_mean(name, options) {
            Some(s) => format!("did you mean `{s}`? the options are {list}"),
            None => format!("the options are {list}"),
        });
        self.diags.push(d);
    }

    fn variant(
        &mut self,
        variants: &'static [schema::VariantSpec],
        name: &str,
        field: &str,
        span: Span,
    ) -> Option<&'static schema::VariantSpec> {
        let found = variants.iter().find(|v| v.name == name);
        if found.is_none() {
            self.unknown_option(field, name, variants.iter().map(|v| v.name), span);
        }
        found
    }

    /// A preset's record, with the preset's own references rooted where it is used.
    /// A preset of the standard library by name (load.rs loads the modules that hold the
    /// schema's defaults and the families' base models), resolved with `provenance`.
    fn std_preset(
        &mut self,
        kind: &'static KindSpec,
        s: &str,
        field: &str,
        provenance: Provenance,
    ) -> Option<Record> {
        let found = self
            .program
            .modules
            .iter()
            .enumerate()
            .find_map(|(id, m)| {
                matches!(m.key, crate::load::ModuleKey::Std(_))
                    .then(|| {
                        decls(self.program, id)
                            .find(|d| d.name.name == s && d.kind.name == kind.name)
                            .map(|d| (id, d))
                    })
                    .flatten()
            })?;
        let (module, decl) = found;
        let path = vec![field.to_string()];
        let ctx = Ctx {
            module,
            root: path.clone(),
            path,
            provenance,
        };
        let mut record = self.fresh(Shape::of(kind), &decl.body, &ctx, Some(decl.name.span));
        record.preset = Some(s.to_string());
        Some(record)
    }

    /// `model = auto { family = NAME }`: the family's base model (`family.rs`) with its shape
    /// (layers, hidden, FFN, heads, key/value heads) left `auto`, for derive.rs to size from
    /// the experiment's compute budget.
    fn auto_model(
        &mut self,
        kind: &'static KindSpec,
        body: &Block,
        at: Span,
        field: &str,
    ) -> Option<Value> {
        let help = || {
            format!(
                "write `{field} = auto {{ family = {} }}`",
                crate::family::FAMILIES
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        };
        if kind.name != "model" {
            self.diags.push(
                Diagnostic::new(
                    codes::CANNOT_DERIVE,
                    format!("kiln cannot derive a `{}` from hints", kind.name),
                )
                .at(at, "`auto { … }` is only for `model`")
                .help(format!("name a {} preset", kind.name)),
            );
            return None;
        }
        let mut family = None;
        for entry in &body.entries {
            match entry {
                Entry::Field { key, value, .. } if key.name == "family" => match &value.kind {
                    ExprKind::Path(p) if p.len() == 1 => {
                        family = Some((p[0].name.clone(), value.span))
                    }
                    _ => {
                        self.diags.push(
                            Diagnostic::new(codes::WRONG_TYPE, "`family` is a family's name")
                                .at(value.span, "not a name")
                                .help(help()),
                        );
                        return None;
                    }
                },
                other => {
                    self.diags.push(
                        Diagnostic::new(
                            codes::UNKNOWN_FIELD,
                            "`model = auto { … }` takes only `family`",
                        )
                        .at(other.span(), "not `family`")
                        .help(format!(
                            "{}; to set other fields, declare the model",
                            help()
                        )),
                    );
                    return None;
                }
            }
        }
        let Some((name, span)) = family else {
            self.diags.push(
                Diagnostic::new(codes::MISSING_FIELD, "`model = auto { … }` needs `family`")
                    .at(at, "no family")
                    .help(help()),
            );
            return None;
        };
        let Some(fam) = crate::family::find(&name) else {
            self.diags.push(
                Diagnostic::new(
                    codes::UNKNOWN_NAME,
                    format!("there is no model family `{name}`"),
                )
                .at(span, "unknown family")
                .help(help()),
            );
            return None;
        };
        let mut record = self.std_preset(kind, fam.base, field, Provenance::Declared)?;
        for f in crate::family::SHAPE_FIELDS {
            record.fields.insert(
                f.to_string(),
                Slot {
                    value: Value::Auto,
                    provenance: Provenance::Declared,
                    span: Some(at),
                },
            );
        }
        // The base model's published count is not this model's.
        record.fields.shift_remove("published_params");
        record.preset = Some(crate::family::auto_name(fam));
        record.span = Some(at);
        Some(Value::Record(record))
    }

    fn preset(
        &mut self,
        kind: &'static KindSpec,
        name: &str,
        span: Span,
        field: &str,
        ctx: &Ctx,
    ) -> Option<Record> {
        let Some(&(module, decl)) = self.scopes[ctx.module].get(name) else {
            if self.unsure[ctx.module]
                .as_ref()
                .is_none_or(|u| u.contains(name))
            {
                return None;
            }
            let scope = &self.scopes[ctx.module];
            let same_kind = scope
                .iter()
                .filter(|(_, (_, d))| d.kind.name == kind.name)
                .map(|(n, _)| n.as_str());
            let mut d = Diagnostic::new(
                codes::UNKNOWN_NAME,
                format!("no {} named `{name}` is in scope", kind.name),
            )
            .at(span, "not found");
            let stdlib = stdlib_home(name);
            d = d.help(if let Some((module, decl_kind)) = &stdlib {
                if *decl_kind == kind.name {
                    format!("add `import std.{module}.{name}`")
                } else {
                    format!("`{name}` is a {decl_kind} in std.{module}, not a {}", kind.name)
                }
            } else if let Some(s) = did_you_mean(name, same_kind) {
                format!("did you mean `{s}`?")
            } else {
                format!("declare `{} {name} {{ … }}` or import it from the standard library (`import std.{}s`)", kind.name, kind.name)
            });
            self.diags.push(d);
            return None;
        };
        if decl.kind.name != kind.name {
            self.diags.push(
                Diagnostic::new(
                    codes::WRONG_KIND,
                    format!(
                        "`{field}` takes a {}, but `{name}` is a {}",
                        kind.name, decl.kind.name
                    ),
                )
                .at(span, format!("a {}", decl.kind.name))
                .label(decl.name.span, format!("`{name}` declared here"))
                .help(format!("name a {} preset here", kind.name)),
            );
            return None;
        }
        if self.depth >= MAX_PRESET_DEPTH {
            return None;
        }
        self.depth += 1;
        let mut root = ctx.path.clone();
        root.push(field.to_string());
        let inner = Ctx {
            module,
            path: root.clone(),
            root,
            provenance: Provenance::Preset(name.to_string()),
        };
        let mut record = self.fresh(Shape::of(kind), &decl.body, &inner, Some(decl.name.span));
        self.depth -= 1;
        record.preset = Some(name.to_string());
        Some(record)
    }
}

/// Counts above 2^53 cannot be held exactly in an f64; no count of a real run comes near
/// (the largest token budgets are about 4e13). Whole-number fields, tokens and steps stay
/// at or below it, and so do the counts kiln derives from them (check/limits.rs).
pub const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// Range and whole-number checks of a number against its field.
pub fn check_number(
    v: f64,
    found: Dim,
    dim: Dim,
    kind: NumKind,
    field: &str,
    span: Span,
) -> Result<f64, Diagnostic> {
    if found != dim && !(found == Dim::Count && dim.accepts_bare_count()) {
        let help = if found == Dim::Count {
            format!(
                "give the unit: `{field} = {} {}`",
                units::trim(v),
                dim.example_unit()
            )
        } else {
            format!("`{field}` is in {dim}{}", unit_hint(dim))
        };
        return Err(Diagnostic::new(
            codes::UNIT_MISMATCH,
            format!("`{field}` takes {dim}, not {found}"),
        )
        .at(span, format!("this is {found}"))
        .help(help));
    }
    if !v.is_finite() {
        return Err(Diagnostic::new(
            codes::OUT_OF_RANGE,
            format!("`{field}` is not a finite number"),
        )
        .at(span, "too large")
        .help("write a smaller number"));
    }
    let whole = v.fract() == 0.0;
    // Tokens and steps become whole numbers of steps and batches in the plan.
    let counted =
        matches!(dim, Dim::Tokens | Dim::Steps) || kind == NumKind::Whole || kind == NumKind::Count;
    let problem = match kind {
        _ if counted && v > MAX_COUNT => {
            Some((codes::OUT_OF_RANGE, "is too large to count exactly"))
        }
        NumKind::Real => None,
        NumKind::Positive if v <= 0.0 => Some((codes::OUT_OF_RANGE, "must be above 0")),
        NumKind::NonNegative if v < 0.0 => Some((codes::OUT_OF_RANGE, "must not be negative")),
        NumKind::Whole if v < 0.0 => Some((codes::OUT_OF_RANGE, "must not be negative")),
        NumKind::Count if v < 1.0 => Some((codes::OUT_OF_RANGE, "must be at least 1")),
        NumKind::Whole | NumKind::Count if !whole => {
            Some((codes::NOT_A_WHOLE_NUMBER, "must be a whole number"))
        }
        NumKind::Fraction if !(0.0..=1.0).contains(&v) => {
            Some((codes::OUT_OF_RANGE, "must be between 0 % and 100 %"))
        }
        NumKind::ZeroStage if !whole || !(0.0..=3.0).contains(&v) => {
            Some((codes::OUT_OF_RANGE, "must be a ZeRO stage: 0, 1, 2 or 3"))
        }
        _ => None,
    };
    let shown = if kind == NumKind::Fraction {
        format!("{}%", units::trim(v * 100.0))
    } else {
        units::show(v, found)
    };
    match problem {
        None => Ok(v),
        Some((code, why)) => Err(
            Diagnostic::new(code, format!("`{field}` {why}, not {}", shown))
                .at(span, why)
                .help(match kind {
                    _ if counted && v > MAX_COUNT => format!(
                        "`{field}` counts {}; write a number up to {} (2^53)",
                        match dim {
                            Dim::Tokens => "tokens",
                            Dim::Steps => "steps",
                            _ => "things",
                        },
                        units::scientific(MAX_COUNT)
                    ),
                    NumKind::Whole | NumKind::Count => format!(
                        "`{field}` counts whole things; write e.g. {}",
                        units::trim(v.round().max(1.0))
                    ),
                    NumKind::Fraction => "write a percentage such as `25%`".to_string(),
                    NumKind::ZeroStage => {
                        "stage 1 shards optimizer states, 2 also gradients, 3 also parameters"
                            .to_string()
                    }
                    NumKind::Positive => format!("`{field}` must be a positive number"),
                    _ => format!("`{field}` {why}"),
                }),
        ),
    }
}

/// The first reference (`model.params`) in an expression, as written.
fn first_reference(expr: &Expr) -> Option<String> {
    match &expr.kind {
        ExprKind::Path(p) => Some(
            p.iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join("."),
        ),
        ExprKind::Neg(e) | ExprKind::Paren(e) => first_reference(e),
        ExprKind::Binary { lhs, rhs, .. } => first_reference(lhs).or_else(|| first_reference(rhs)),
        _ => None,
    }
}

fn unit_hint(dim: Dim) -> String {
    match dim.example_unit() {
        "" => String::new(),
        u => format!(", such as `1 {u}`"),
    }
}

fn derived_help(name: &str) -> String {
    match name {
        "params" => "kiln counts parameters from the shape; to record a paper's count write `published_params = …`".into(),
        "world" => "the world size is the cluster's nodes × GPUs per node; change `cluster` instead".into(),
        _ => "remove it; kiln derives it from the other fields".into(),
    }
}

fn describe_record(r: &Record) -> String {
    match &r.preset {
        Some(p) => format!("{} `{p}`", r.kind),
        None => format!("`{}`", r.kind),
    }
}

fn describe_expr(expr: &Expr) -> &'static str {
    match &expr.kind {
        ExprKind::Quantity { .. } => "a number",
        ExprKind::Str(_) => "a string",
        ExprKind::Bool(_) => "a boolean",
        ExprKind::Auto => "`auto`",
        ExprKind::Path(_) => "a name",
        ExprKind::Construct { .. } => "a constructor",
        ExprKind::Block(_) => "a block",
        ExprKind::List(_) => "a list",
        ExprKind::Neg(_) | ExprKind::Binary { .. } | ExprKind::Paren(_) => "an expression",
    }
}

/// Which standard-library module declares `name`, and as what kind.
fn stdlib_home(name: &str) -> Option<(&'static str, String)> {
    static INDEX: std::sync::OnceLock<HashMap<String, (&'static str, String)>> =
        std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut index = HashMap::new();
        for (module, text) in STDLIB {
            if let Ok(file) = crate::syntax::parse(0, text) {
                for item in file.items {
                    if let Item::Decl(d) = item {
                        index.insert(d.name.name, (*module, d.kind.name));
                    }
                }
            }
        }
        index
    });
    index.get(name).cloned()
}
