//! Loading: reads the entry files and everything they import, the standard library from
//! the binary and project files through a [`SourceLoader`], and finds import cycles.

use crate::codes;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::span::{Sources, Span};
use crate::syntax::ast::{self, ImportTarget, Item};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/stdlib.rs"));

/// Where source text comes from; the compiler core does no IO of its own.
pub trait SourceLoader {
    fn read(&self, path: &Path) -> std::io::Result<String>;
    /// Whether `dir` marks a project root (holds `kiln.toml` or `.git`).
    fn is_project_root(&self, dir: &Path) -> bool;
}

/// Reads from the file system.
pub struct FsLoader;

impl SourceLoader for FsLoader {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn is_project_root(&self, dir: &Path) -> bool {
        dir.join("kiln.toml").exists() || dir.join(".git").exists()
    }
}

pub type ModuleId = usize;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModuleKey {
    Std(String),
    File(PathBuf),
}

/// One parsed file and what its imports point at.
#[derive(Debug)]
pub struct Module {
    pub key: ModuleKey,
    pub file: crate::span::FileId,
    /// `None` when the file did not parse.
    pub ast: Option<ast::File>,
    pub imports: Vec<ImportEdge>,
    /// Whether an import of this module could not be loaded (already reported).
    pub failed_imports: bool,
}

#[derive(Debug)]
pub struct ImportEdge {
    pub span: Span,
    pub module: ModuleId,
    /// `import std.models.llama3_8b` names one declaration; `None` imports them all.
    pub item: Option<ast::Ident>,
}

/// Every file of one compilation.
pub struct Program {
    pub sources: Sources,
    pub modules: Vec<Module>,
    /// The modules named on the command line, in order.
    pub roots: Vec<ModuleId>,
}

impl Default for Program {
    fn default() -> Program {
        Program {
            sources: Sources::new(),
            modules: Vec::new(),
            roots: Vec::new(),
        }
    }
}

/// Reads every entry file and, transitively, its imports. IO errors on entry files are
/// returned as `Err` (exit code 2); everything else is a diagnostic.
pub fn load(
    entries: &[PathBuf],
    loader: &dyn SourceLoader,
) -> Result<(Program, Vec<Diagnostic>), String> {
    let mut l = Loader::new(loader);
    for entry in entries {
        let text = loader
            .read(entry)
            .map_err(|e| format!("cannot read `{}`: {e}", entry.display()))?;
        let path = normalize(entry);
        let id = l.add(ModuleKey::File(path), entry.display().to_string(), text);
        l.program.roots.push(id);
    }
    l.std_defaults();
    Ok((l.program, l.diags))
}

/// Loads the text of one file given in memory (tests, the fuzzer).
pub fn load_text(name: &str, text: &str, loader: &dyn SourceLoader) -> (Program, Vec<Diagnostic>) {
    let mut l = Loader::new(loader);
    let id = l.add(
        ModuleKey::File(normalize(Path::new(name))),
        name.to_string(),
        text.to_string(),
    );
    l.program.roots.push(id);
    l.std_defaults();
    (l.program, l.diags)
}

struct Loader<'a> {
    loader: &'a dyn SourceLoader,
    program: Program,
    by_key: HashMap<ModuleKey, ModuleId>,
    /// Modules being loaded, for cycle detection.
    stack: Vec<ModuleId>,
    diags: Vec<Diagnostic>,
}

/// Standard-library modules that hold defaults of the schema (the default `law`), loaded
/// whether or not a file imports them.
pub const DEFAULT_MODULES: &[&str] = &["laws"];

impl<'a> Loader<'a> {
    fn std_defaults(&mut self) {
        for module in DEFAULT_MODULES {
            let key = ModuleKey::Std(module.to_string());
            if !self.by_key.contains_key(&key) {
                let text = STDLIB
                    .iter()
                    .find(|(m, _)| m == module)
                    .map(|(_, t)| t.to_string())
                    .unwrap_or_default();
                self.add(key, format!("std/{module}.kiln"), text);
            }
        }
    }

    fn new(loader: &'a dyn SourceLoader) -> Loader<'a> {
        Loader {
            loader,
            program: Program::default(),
            by_key: HashMap::new(),
            stack: Vec::new(),
            diags: Vec::new(),
        }
    }

    fn add(&mut self, key: ModuleKey, name: String, text: String) -> ModuleId {
        let file = self.program.sources.add(name, text.clone());
        let ast = match crate::syntax::parse(file, &text) {
            Ok(ast) => Some(ast),
            Err(d) => {
                self.diags.push(d);
                None
            }
        };
        let id = self.program.modules.len();
        self.program.modules.push(Module {
            key: key.clone(),
            file,
            ast: None,
            imports: Vec::new(),
            failed_imports: false,
        });
        self.by_key.insert(key, id);
        self.stack.push(id);
        let mut imports = Vec::new();
        let mut failed = false;
        if let Some(ast) = &ast {
            for item in &ast.items {
                if let Item::Import(import) = item {
                    match self.import(id, import) {
                        Some(edge) => imports.push(edge),
                        None => failed = true,
                    }
                }
            }
        }
        self.stack.pop();
        let module = &mut self.program.modules[id];
        module.ast = ast;
        module.imports = imports;
        module.failed_imports = failed;
        id
    }

    fn import(&mut self, from: ModuleId, import: &ast::Import) -> Option<ImportEdge> {
        let (key, name, item) = match &import.target {
            ImportTarget::Module(path) => {
                let names: Vec<&str> = path.iter().map(|i| i.name.as_str()).collect();
                if names[0] != "std" || !(2..=3).contains(&names.len()) {
                    self.diags.push(
                        Diagnostic::new(codes::IMPORT_NOT_FOUND, format!("cannot import `{}`", names.join(".")))
                            .at(import.span, "not a standard-library module")
                            .help(format!(
                                "standard-library imports are `std.MODULE` or `std.MODULE.NAME` (modules: {}); import project files by a quoted path such as `import \"common.kiln\"`",
                                STDLIB.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ")
                            )),
                    );
                    return None;
                }
                let module = names[1];
                if !STDLIB.iter().any(|(m, _)| *m == module) {
                    let mut d = Diagnostic::new(
                        codes::IMPORT_NOT_FOUND,
                        format!("there is no standard-library module `std.{module}`"),
                    )
                    .at(path[1].span, "unknown module");
                    if let Some(s) = did_you_mean(module, STDLIB.iter().map(|(m, _)| *m)) {
                        d = d.help(format!("did you mean `std.{s}`?"));
                    }
                    self.diags.push(d);
                    return None;
                }
                (
                    ModuleKey::Std(module.to_string()),
                    format!("std/{module}.kiln"),
                    path.get(2).cloned(),
                )
            }
            ImportTarget::File(rel) => {
                let ModuleKey::File(from_path) = self.program.modules[from].key.clone() else {
                    self.diags.push(
                        Diagnostic::new(
                            codes::IMPORT_NOT_FOUND,
                            "the standard library cannot import project files",
                        )
                        .at(import.span, "file import in the standard library")
                        .help("import other standard-library modules as `std.MODULE.NAME`"),
                    );
                    return None;
                };
                let dir = from_path.parent().unwrap_or(Path::new("")).to_path_buf();
                let target = normalize(&dir.join(rel));
                let root = self.project_root(&dir);
                if !absolute(&target).starts_with(&root) {
                    // Say where the root is relative to the importing file, as the user sees it.
                    let up = absolute(&dir)
                        .components()
                        .count()
                        .saturating_sub(root.components().count());
                    let root_shown = if up == 0 {
                        ".".to_string()
                    } else {
                        vec![".."; up].join("/")
                    };
                    self.diags.push(
                        Diagnostic::new(codes::IMPORT_ESCAPES, format!("`{rel}` is outside this file's project"))
                            .at(import.span, "leaves the project")
                            .help(format!(
                                "the project root is `{root_shown}` from this file (the nearest directory with `kiln.toml` or `.git`); move the imported file inside it"
                            )),
                    );
                    return None;
                }
                (
                    ModuleKey::File(target.clone()),
                    target.display().to_string(),
                    None,
                )
            }
        };
        if let Some(&id) = self.by_key.get(&key) {
            if let Some(pos) = self.stack.iter().position(|&m| m == id) {
                let cycle: Vec<String> = self.stack[pos..]
                    .iter()
                    .chain(std::iter::once(&id))
                    .map(|&m| {
                        self.program
                            .sources
                            .get(self.program.modules[m].file)
                            .map(|f| f.name().clone())
                            .unwrap_or_default()
                    })
                    .collect();
                self.diags.push(
                    Diagnostic::new(codes::IMPORT_CYCLE, "import cycle")
                        .at(import.span, "this import closes the cycle")
                        .note(format!("cycle: {}", cycle.join(" → ")))
                        .help("move the shared declarations into a file that both import"),
                );
                return None;
            }
            return Some(ImportEdge {
                span: import.span,
                module: id,
                item,
            });
        }
        let text = match &key {
            ModuleKey::Std(m) => STDLIB
                .iter()
                .find(|(n, _)| n == m)
                .map(|(_, t)| t.to_string()),
            ModuleKey::File(p) => self.loader.read(p).ok(),
        };
        let Some(text) = text else {
            self.diags.push(
                Diagnostic::new(codes::IMPORT_NOT_FOUND, format!("cannot read `{name}`"))
                    .at(import.span, "file not found")
                    .help("paths in imports are relative to the importing file"),
            );
            return None;
        };
        if self.stack.len() > 64 {
            return None;
        }
        let id = self.add(key, name, text);
        Some(ImportEdge {
            span: import.span,
            module: id,
            item,
        })
    }

    /// The nearest directory at or above `dir` that holds `kiln.toml` or `.git`, else `dir`.
    fn project_root(&self, dir: &Path) -> PathBuf {
        let abs = absolute(dir);
        abs.ancestors()
            .find(|d| self.loader.is_project_root(d))
            .unwrap_or(&abs)
            .to_path_buf()
    }
}

fn absolute(path: &Path) -> PathBuf {
    // The parent of a bare file name is "", which is the current directory.
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// Removes `.` and folds `a/..` without touching the file system (keeps leading `..`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    out
}
