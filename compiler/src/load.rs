//! Loading: reads the entry files and everything they import, the standard library from
//! the binary and project files through a [`SourceLoader`], and finds import cycles.

use crate::codes;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::span::{Sources, Span};
use crate::syntax::ast::{self, ImportTarget, Item};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/stdlib.rs"));

/// Source files larger than this are refused (K-I006): the largest experiment or preset file
/// is a few kilobytes, and the limit keeps a link to `/dev/zero` or a multi-gigabyte file
/// from exhausting memory before anything is parsed.
pub const MAX_SOURCE_BYTES: u64 = 16 * 1024 * 1024;

/// Imports nested deeper than this many files are refused (K-I005): real projects import
/// one or two levels (an experiment, its presets), and loading recurses once per level.
pub const MAX_IMPORT_DEPTH: usize = 64;

/// Why a file was not read.
#[derive(Debug)]
pub enum ReadError {
    /// The file system's own error: not found, permission denied, ….
    Io(std::io::Error),
    /// Not a regular file; what it is instead (`a directory`, `a FIFO (named pipe)`, …).
    NotAFile(&'static str),
    /// Larger than [`MAX_SOURCE_BYTES`].
    TooLarge,
}

/// Where source text comes from; the compiler core does no IO of its own.
pub trait SourceLoader {
    /// The bytes of a file to import: a regular file (symbolic links followed) of at most
    /// [`MAX_SOURCE_BYTES`]. Must not block, whatever `path` names.
    fn read(&self, path: &Path) -> Result<Vec<u8>, ReadError>;
    /// The bytes of an entry file (named on the command line): as [`Self::read`], except
    /// that a pipe or device is read too (`kiln check <(…)`), still up to the size limit.
    fn read_entry(&self, path: &Path) -> Result<Vec<u8>, ReadError> {
        self.read(path)
    }
    /// Whether `dir` marks a project root (holds `kiln.toml` or `.git`).
    fn is_project_root(&self, dir: &Path) -> bool;
    /// The absolute path with every symbolic link resolved; `None` when it does not exist.
    /// Loaders without links (in memory) keep the default, and only lexical paths count.
    fn canonicalize(&self, _path: &Path) -> Option<PathBuf> {
        None
    }
}

/// Reads from the file system.
pub struct FsLoader;

impl SourceLoader for FsLoader {
    fn read(&self, path: &Path) -> Result<Vec<u8>, ReadError> {
        // Look before opening: opening a FIFO blocks until a writer comes, and opening a
        // device can do anything.
        let meta = std::fs::metadata(path).map_err(ReadError::Io)?;
        if !meta.is_file() {
            return Err(ReadError::NotAFile(file_kind(&meta)));
        }
        if meta.len() > MAX_SOURCE_BYTES {
            return Err(ReadError::TooLarge);
        }
        let file = open_nonblocking(path).map_err(ReadError::Io)?;
        // The path may have been replaced since: check what was opened.
        let meta = file.metadata().map_err(ReadError::Io)?;
        if !meta.is_file() {
            return Err(ReadError::NotAFile(file_kind(&meta)));
        }
        read_at_most(file)
    }
    fn read_entry(&self, path: &Path) -> Result<Vec<u8>, ReadError> {
        let meta = std::fs::metadata(path).map_err(ReadError::Io)?;
        if meta.is_dir() {
            return Err(ReadError::NotAFile(file_kind(&meta)));
        }
        let file = std::fs::File::open(path).map_err(ReadError::Io)?;
        read_at_most(file)
    }
    fn is_project_root(&self, dir: &Path) -> bool {
        dir.join("kiln.toml").exists() || dir.join(".git").exists()
    }
    fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }
}

/// Opens for reading without blocking on a FIFO (the file type is checked after).
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Reads to the end, or fails as soon as more than [`MAX_SOURCE_BYTES`] arrive (a device or
/// a file that grows never ends).
fn read_at_most(file: std::fs::File) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

/// What a file that is not a regular file is, in words.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Where bytes stop being UTF-8.
pub struct NotUtf8 {
    /// The text with each bad sequence replaced by U+FFFD (the same bytes up to the first).
    pub text: String,
    /// The offset of the first bad byte, and its value.
    pub offset: usize,
    pub byte: u8,
}

/// The text of `bytes`, or where they stop being UTF-8.
pub fn decode(bytes: Vec<u8>) -> Result<String, NotUtf8> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            Err(NotUtf8 {
                byte: e.as_bytes()[offset],
                text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                offset,
            })
        }
    }
}

/// Adds text that is not UTF-8 to `sources` (U+FFFD in place of each bad sequence) and
/// returns its file and the K-I006 diagnostic pointing at the first bad byte.
pub fn not_utf8(
    sources: &mut Sources,
    name: &str,
    bad: NotUtf8,
) -> (crate::span::FileId, Diagnostic) {
    let NotUtf8 { text, offset, byte } = bad;
    let width = text[offset..].chars().next().map_or(0, char::len_utf8);
    let file = sources.add(name.to_string(), text);
    let d = Diagnostic::new(
        codes::UNREADABLE_FILE,
        format!(
            "`{name}` is not UTF-8 text: byte {offset} (0x{byte:02X}) starts an invalid sequence"
        ),
    )
    .at(Span::new(file, offset, offset + width), "not UTF-8")
    .help("kiln files are UTF-8; convert it (`iconv -t UTF-8`) or remove the stray bytes");
    (file, d)
}

/// The message of an entry file that cannot be read (exit code 2).
pub fn entry_error(path: &Path, e: ReadError) -> String {
    match e {
        ReadError::Io(e) => format!("cannot read `{}`: {e}", path.display()),
        ReadError::NotAFile(kind) => format!("`{}` is {kind}, not a file", path.display()),
        ReadError::TooLarge => format!(
            "`{}` is larger than {} MiB, the most kiln reads from one file",
            path.display(),
            MAX_SOURCE_BYTES >> 20
        ),
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
        let bytes = loader
            .read_entry(entry)
            .map_err(|e| entry_error(entry, e))?;
        let path = normalize(entry);
        if let Some(real) = loader.canonicalize(&path) {
            l.by_real.entry(real).or_insert(l.program.modules.len());
        }
        let id = l.add_bytes(
            ModuleKey::File(path),
            entry.display().to_string(),
            bytes,
            None,
        );
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
    /// Project files by their path with links resolved: two paths to one file are one
    /// module, and a cycle through a symbolic link is found as a cycle.
    by_real: HashMap<PathBuf, ModuleId>,
    /// Modules being loaded, for cycle detection.
    stack: Vec<ModuleId>,
    diags: Vec<Diagnostic>,
}

/// Standard-library modules that hold defaults of the schema (the default `law`) and the
/// model families' base models (`family.rs`), loaded whether or not a file imports them.
pub const DEFAULT_MODULES: &[&str] = &["laws", "models"];

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
            by_real: HashMap::new(),
            stack: Vec::new(),
            diags: Vec::new(),
        }
    }

    /// [`Self::add`] for bytes from a file: text that is not UTF-8 is kept (with U+FFFD in
    /// place of each bad sequence) so that the diagnostic can show where, and not parsed.
    fn add_bytes(
        &mut self,
        key: ModuleKey,
        name: String,
        bytes: Vec<u8>,
        imported_at: Option<Span>,
    ) -> ModuleId {
        match decode(bytes) {
            Ok(text) => self.add(key, name, text),
            Err(bad) => {
                let (file, mut d) = not_utf8(&mut self.program.sources, &name, bad);
                if let Some(span) = imported_at {
                    d = d.label(span, "imported here");
                }
                self.diags.push(d);
                self.push_module(key, file)
            }
        }
    }

    /// Registers a module (its imports and tree filled in later, if at all) under `key`.
    fn push_module(&mut self, key: ModuleKey, file: crate::span::FileId) -> ModuleId {
        let id = self.program.modules.len();
        self.program.modules.push(Module {
            key: key.clone(),
            file,
            ast: None,
            imports: Vec::new(),
            failed_imports: false,
        });
        self.by_key.insert(key, id);
        id
    }

    fn add(&mut self, key: ModuleKey, name: String, text: String) -> ModuleId {
        let file = self.program.sources.add(name, text);
        let text = self
            .program
            .sources
            .get(file)
            .map(|f| f.source().as_str())
            .unwrap_or("");
        let ast = match crate::syntax::parse(file, text) {
            Ok(ast) => Some(ast),
            Err(d) => {
                self.diags.push(d);
                None
            }
        };
        let id = self.push_module(key, file);
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
        let (key, name, item, real) = match &import.target {
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
                    None,
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
                let root = project_root(self.loader, &dir);
                if !absolute(&target).starts_with(&root) {
                    let root_shown = root_from(&dir, &root);
                    self.diags.push(
                        Diagnostic::new(codes::IMPORT_ESCAPES, format!("`{rel}` is outside this file's project"))
                            .at(import.span, "leaves the project")
                            .help(format!(
                                "the project root is `{root_shown}` from this file (the nearest directory with `kiln.toml` or `.git`); move the imported file inside it"
                            )),
                    );
                    return None;
                }
                // The same boundary on the file system as it is: a symbolic link inside the
                // project may lead out of it.
                let real = self.loader.canonicalize(&target);
                if let Some(real) = &real {
                    let real_root = real_project_root(self.loader, &dir);
                    if !real.starts_with(&real_root) {
                        self.diags.push(
                            Diagnostic::new(
                                codes::IMPORT_ESCAPES,
                                format!("`{rel}` leads outside this file's project"),
                            )
                            .at(import.span, "leaves the project through a symbolic link")
                            .note(format!(
                                "it is `{}`; the project is `{}`",
                                real.display(),
                                real_root.display()
                            ))
                            .help("copy the file into the project instead of linking to it"),
                        );
                        return None;
                    }
                }
                (
                    ModuleKey::File(target.clone()),
                    target.display().to_string(),
                    None,
                    real,
                )
            }
        };
        let known = self
            .by_key
            .get(&key)
            .or_else(|| real.as_ref().and_then(|r| self.by_real.get(r)))
            .copied();
        if let Some(id) = known {
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
        if self.stack.len() >= MAX_IMPORT_DEPTH {
            self.too_deep(import.span, &name);
            return None;
        }
        let bytes = match &key {
            ModuleKey::Std(m) => STDLIB
                .iter()
                .find(|(n, _)| n == m)
                .map(|(_, t)| t.as_bytes().to_vec())
                .ok_or(ReadError::Io(std::io::ErrorKind::NotFound.into())),
            ModuleKey::File(p) => self.loader.read(p),
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => {
                self.diags.push(unreadable(e, &name, import.span));
                return None;
            }
        };
        if let Some(real) = real {
            self.by_real.insert(real, self.program.modules.len());
        }
        let id = self.add_bytes(key, name, bytes, Some(import.span));
        Some(ImportEdge {
            span: import.span,
            module: id,
            item,
        })
    }

    /// K-I005: the import at `span` of `name` would nest deeper than [`MAX_IMPORT_DEPTH`].
    fn too_deep(&mut self, span: Span, name: &str) {
        let names: Vec<String> = self
            .stack
            .iter()
            .map(|&m| {
                self.program
                    .sources
                    .get(self.program.modules[m].file)
                    .map(|f| f.name().clone())
                    .unwrap_or_default()
            })
            .chain(std::iter::once(name.to_string()))
            .collect();
        // The chain's two ends say enough; the middle is the same step repeated.
        let shown = if names.len() > 6 {
            format!(
                "{} → … {} more … → {}",
                names[..3].join(" → "),
                names.len() - 6,
                names[names.len() - 3..].join(" → ")
            )
        } else {
            names.join(" → ")
        };
        self.diags.push(
            Diagnostic::new(
                codes::IMPORT_TOO_DEEP,
                format!("imports nest more than {MAX_IMPORT_DEPTH} files deep"),
            )
            .at(span, format!("file {} of the chain", names.len()))
            .note(format!("chain: {shown}"))
            .help("import the declarations you need from the file that declares them, not through a chain of files"),
        );
    }
}

/// The nearest directory at or above `dir` that holds `kiln.toml` or `.git`, else `dir`
/// (absolute, lexical: `..` folded, links not followed).
fn project_root(loader: &dyn SourceLoader, dir: &Path) -> PathBuf {
    let abs = absolute(dir);
    abs.ancestors()
        .find(|d| loader.is_project_root(d))
        .unwrap_or(&abs)
        .to_path_buf()
}

/// Where `root` (at or above `dir`) is from `dir`, as the user sees it: `.`, `..`, `../..`.
fn root_from(dir: &Path, root: &Path) -> String {
    let up = absolute(dir)
        .components()
        .count()
        .saturating_sub(root.components().count());
    if up == 0 {
        ".".to_string()
    } else {
        vec![".."; up].join("/")
    }
}

/// The project root of `dir` on the file system as it is (links resolved): the nearest
/// directory at or above it with `kiln.toml` or `.git`, else `dir` itself.
fn real_project_root(loader: &dyn SourceLoader, dir: &Path) -> PathBuf {
    let real = loader
        .canonicalize(&absolute(dir))
        .unwrap_or_else(|| absolute(dir));
    real.ancestors()
        .find(|d| loader.is_project_root(d))
        .unwrap_or(&real)
        .to_path_buf()
}

/// K-I007: the relative `path` of every data source of the experiments in `decls` stays
/// inside the project of the file that declares the experiment (relative source paths are
/// read from the project root, the `kiln` command's `project_root`), by its path and with links
/// resolved as far as it exists on this machine. An absolute path declares data that lives
/// elsewhere and is not checked.
pub fn check_source_paths(
    program: &Program,
    decls: &[crate::ir::Resolved],
    loader: &dyn SourceLoader,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for decl in decls.iter().filter(|d| d.record.kind == "experiment") {
        let Some(span) = decl.record.span else {
            continue;
        };
        let Some(ModuleKey::File(file)) = program
            .modules
            .iter()
            .find(|m| m.file == span.file)
            .map(|m| &m.key)
        else {
            continue;
        };
        let dir = file.parent().unwrap_or(Path::new(""));
        let root = project_root(loader, dir);
        for (name, source, entry) in decl.record.entries("source") {
            let Some(path) = source.str("path") else {
                continue;
            };
            if Path::new(path).is_absolute() {
                continue;
            }
            let at = source.span_of("path").unwrap_or(entry);
            let target = normalize(&root.join(path));
            if !target.starts_with(&root) {
                out.push(
                    Diagnostic::new(
                        codes::SOURCE_ESCAPES,
                        format!("source `{name}`: `{path}` is outside the project"),
                    )
                    .at(at, "leaves the project")
                    .help(format!(
                        "relative source paths are read from the project root, `{}` from this file (the nearest directory with `kiln.toml` or `.git`); move the data inside it, or write an absolute path to data that lives elsewhere",
                        root_from(dir, &root)
                    )),
                );
                continue;
            }
            // The deepest part of the path that exists (a pattern such as `link/*.jsonl`
            // exists only up to `link`), with its links resolved.
            let Some(real) = target.ancestors().find_map(|a| loader.canonicalize(a)) else {
                continue;
            };
            let real_root = loader.canonicalize(&root).unwrap_or_else(|| root.clone());
            if !real.starts_with(&real_root) {
                out.push(
                    Diagnostic::new(
                        codes::SOURCE_ESCAPES,
                        format!("source `{name}`: `{path}` leads outside the project"),
                    )
                    .at(at, "leaves the project through a symbolic link")
                    .note(format!(
                        "it is `{}`; the project is `{}`",
                        real.display(),
                        real_root.display()
                    ))
                    .help(format!(
                        "write the absolute path `{}` if the data is meant to live outside the project",
                        real.display()
                    )),
                );
            }
        }
    }
    out
}

/// The diagnostic for an imported file that cannot be read (K-I001, K-I006).
fn unreadable(e: ReadError, name: &str, at: Span) -> Diagnostic {
    match e {
        ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Diagnostic::new(codes::IMPORT_NOT_FOUND, format!("cannot read `{name}`"))
                .at(at, "file not found")
                .help("paths in imports are relative to the importing file")
        }
        ReadError::Io(e) => Diagnostic::new(
            codes::IMPORT_NOT_FOUND,
            format!("cannot read `{name}`: {e}"),
        )
        .at(at, "cannot be read")
        .help("check the file's permissions"),
        ReadError::NotAFile(kind) => Diagnostic::new(
            codes::UNREADABLE_FILE,
            format!("`{name}` is {kind}, not a file"),
        )
        .at(at, "not a regular file")
        .help("import `.kiln` files; kiln reads nothing else"),
        ReadError::TooLarge => Diagnostic::new(
            codes::UNREADABLE_FILE,
            format!(
                "`{name}` is larger than {} MiB, the most kiln reads from one file",
                MAX_SOURCE_BYTES >> 20
            ),
        )
        .at(at, "too large")
        .help("kiln files are a few kilobytes; is this the file you meant to import?"),
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
