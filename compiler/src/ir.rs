//! The resolved experiment: a tree of records whose every value has a unit and a provenance.

use crate::span::Span;
use crate::syntax::ast::Expr;
use crate::units::Dim;
use indexmap::IndexMap;

pub use kiln_plan::spec::Provenance;

#[derive(Clone, Debug)]
pub enum Value {
    Num(f64, Dim),
    Str(String),
    Bool(bool),
    /// An option of an enum field (`bf16_mixed`).
    Sym(String),
    List(Vec<Value>),
    Record(Record),
    /// Before derivation only: an expression over other fields, read relative to `root`.
    Pending {
        expr: Expr,
        root: Vec<String>,
        module: usize,
    },
    /// Before derivation only: a value kiln derives.
    Auto,
    /// A value that was rejected with a diagnostic; checks that need it are skipped.
    Invalid,
}

/// One field's value with its provenance and, when written, its span.
#[derive(Clone, Debug)]
pub struct Slot {
    pub value: Value,
    pub provenance: Provenance,
    pub span: Option<Span>,
}

/// A declaration, a block or a variant after resolution.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// The kind (`model`), the block's field name (`parallel`) or the variant (`cosine`).
    pub kind: String,
    /// The preset it started from, if any.
    pub preset: Option<String>,
    pub fields: IndexMap<String, Slot>,
    /// Named entries by kind, in source order: `named["phase"]["main"]`.
    pub named: IndexMap<String, IndexMap<String, (Record, Span)>>,
    /// The span of the declaration or block it was resolved from.
    pub span: Option<Span>,
}

impl Record {
    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.get(name)
    }

    /// Every lookup by field name goes through here: in debug builds a name that no kind of
    /// the schema has (a misspelling in the compiler) panics instead of reading as absent.
    fn get(&self, name: &str) -> Option<&Slot> {
        let slot = self.fields.get(name);
        #[cfg(debug_assertions)]
        if slot.is_none() {
            assert!(
                crate::schema::is_field_name(name) || crate::schema::has_free_keys(&self.kind),
                "a `{}` record looked up `{name}`, a field no kind of the schema has",
                self.kind
            );
        }
        slot
    }

    /// A number, once derived. A field written as a ramp (`batch = ramp { … }`) reads as
    /// the ramp's full value, which is what every consumer of the plain quantity sees.
    pub fn num(&self, name: &str) -> Option<f64> {
        match self.get(name).map(|s| &s.value) {
            Some(Value::Num(v, _)) => Some(*v),
            Some(Value::Record(r)) => r.ramp_full(),
            _ => None,
        }
    }

    /// For a `ramp { … }` record (schema::BATCH_RAMP), the value it ramps to.
    pub fn ramp_full(&self) -> Option<f64> {
        if self.kind != "ramp" {
            return None;
        }
        match self.fields.get("to").map(|s| &s.value) {
            Some(Value::Num(v, _)) => Some(*v),
            _ => None,
        }
    }

    /// A list of numbers (`stage_layers = [11, 5]`); `None` when absent or not all numbers.
    pub fn nums(&self, name: &str) -> Option<Vec<f64>> {
        match self.get(name).map(|s| &s.value) {
            Some(Value::List(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Num(n, _) => Some(*n),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.get(name).map(|s| &s.value) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// An enum option, or the name of a variant.
    pub fn sym(&self, name: &str) -> Option<&str> {
        match self.get(name).map(|s| &s.value) {
            Some(Value::Sym(s)) => Some(s),
            Some(Value::Record(r)) => Some(&r.kind),
            _ => None,
        }
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        match self.get(name).map(|s| &s.value) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn record(&self, name: &str) -> Option<&Record> {
        match self.get(name).map(|s| &s.value) {
            Some(Value::Record(r)) => Some(r),
            _ => None,
        }
    }

    /// The span of a field's value, falling back to the record's own span.
    pub fn span_of(&self, name: &str) -> Option<Span> {
        self.get(name).and_then(|s| s.span).or(self.span)
    }

    /// The named entries of one kind (`phase`), in source order.
    pub fn entries(&self, kind: &str) -> impl Iterator<Item = (&String, &Record, Span)> {
        self.named
            .get(kind)
            .into_iter()
            .flat_map(|m| m.iter().map(|(n, (r, s))| (n, r, *s)))
    }

    /// Follows a path of field names and named entries (`phase.main.tokens`) to a slot.
    pub fn lookup(&self, path: &[String]) -> Option<&Slot> {
        let (first, rest) = path.split_first()?;
        if rest.is_empty() {
            return self.fields.get(first);
        }
        if let Some(Slot {
            value: Value::Record(r),
            ..
        }) = self.fields.get(first)
        {
            return r.lookup(rest);
        }
        let (name, rest) = rest.split_first()?;
        let (record, _) = self.named.get(first)?.get(name)?;
        record.lookup(rest)
    }

    pub fn lookup_mut(&mut self, path: &[String]) -> Option<&mut Slot> {
        let (first, rest) = path.split_first()?;
        if rest.is_empty() {
            return self.fields.get_mut(first);
        }
        if matches!(
            self.fields.get(first),
            Some(Slot {
                value: Value::Record(_),
                ..
            })
        ) {
            let Some(Slot {
                value: Value::Record(r),
                ..
            }) = self.fields.get_mut(first)
            else {
                unreachable!()
            };
            return r.lookup_mut(rest);
        }
        let (name, rest) = rest.split_first()?;
        let (record, _) = self.named.get_mut(first)?.get_mut(name)?;
        record.lookup_mut(rest)
    }

    /// The record at a path (`cluster.node`), or self for an empty path.
    pub fn record_at(&self, path: &[String]) -> Option<&Record> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        if let Some(Slot {
            value: Value::Record(r),
            ..
        }) = self.fields.get(first)
        {
            return r.record_at(rest);
        }
        let (name, rest) = rest.split_first()?;
        self.named.get(first)?.get(name)?.0.record_at(rest)
    }

    /// Visits every slot depth first, in source order, with its dotted path: a record-valued
    /// slot before its own fields, named entries after the fields (`phase.main.tokens`).
    pub fn walk(&self, visit: &mut dyn FnMut(&str, &Slot)) {
        fn go(record: &Record, path: &mut Vec<String>, visit: &mut dyn FnMut(&str, &Slot)) {
            for (name, slot) in &record.fields {
                path.push(name.clone());
                visit(&path.join("."), slot);
                if let Value::Record(r) = &slot.value {
                    go(r, path, visit);
                }
                path.pop();
            }
            for (kind, entries) in &record.named {
                for (name, (r, _)) in entries {
                    path.push(kind.clone());
                    path.push(name.clone());
                    go(r, path, visit);
                    path.pop();
                    path.pop();
                }
            }
        }
        go(self, &mut Vec::new(), visit);
    }

    /// Names reachable one step below this record, for suggestions.
    pub fn child_names(&self) -> Vec<&str> {
        self.fields
            .keys()
            .map(String::as_str)
            .chain(self.named.keys().map(String::as_str))
            .collect()
    }
}

/// A resolved declaration: an experiment or a preset checked on its own.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub name: String,
    pub record: Record,
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::Record;

    fn model() -> Record {
        Record {
            kind: "model".into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_absent_field_of_the_schema_reads_as_none() {
        assert_eq!(model().num("layers"), None);
        // A mix takes source names as keys: any name may be looked up.
        let mix = Record {
            kind: "mix".into(),
            ..Default::default()
        };
        assert_eq!(mix.num("my_corpus"), None);
    }

    #[test]
    #[should_panic(expected = "a field no kind of the schema has")]
    fn a_misspelt_field_name_panics_in_debug_builds() {
        model().num("layres");
    }
}
