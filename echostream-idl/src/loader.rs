//! Reading the root files and everything they import.
//!
//! `import "a/b.echo";` is looked up in each include directory in order; the first directory
//! that has the file wins. With no include directory, the directories of the root files are
//! used. A file reached by several paths is read once. Missing files are reported at the
//! `import` line; import cycles at the `import` that closes them.

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::ast;
use crate::diagnostic::Diagnostic;
use crate::recover::{self, Damage};
use crate::source::{FileId, SourceMap};

/// Where schema files come from: the real file system, or memory (tests, tools that hold the
/// text already).
pub trait FileSystem {
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Whether a regular file exists at `path`.
    fn is_file(&self, path: &Path) -> bool;
    /// A key identifying the file behind `path`, so that a file reached by two paths is read
    /// once.
    fn identity(&self, path: &Path) -> PathBuf;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl FileSystem for RealFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn identity(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| normalize(path))
    }
}

/// Files held in memory, by path. Paths are compared after removing `.` components.
#[derive(Clone, Debug, Default)]
pub struct MemoryFs {
    files: HashMap<PathBuf, Vec<u8>>,
}

impl MemoryFs {
    /// An empty file system.
    pub fn new() -> Self {
        MemoryFs::default()
    }

    /// Adds (or replaces) a file.
    pub fn insert(&mut self, path: impl AsRef<Path>, contents: impl Into<Vec<u8>>) {
        self.files.insert(normalize(path.as_ref()), contents.into());
    }
}

impl FileSystem for MemoryFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(&normalize(path))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(&normalize(path))
    }

    fn identity(&self, path: &Path) -> PathBuf {
        normalize(path)
    }
}

/// `path` without `.` components.
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// One file read and parsed.
#[derive(Debug)]
pub(crate) struct LoadedFile {
    pub id: FileId,
    pub is_root: bool,
    /// `None` when the file could not be read; with a syntax error, the declarations that
    /// parsed (see [`recover`]).
    pub ast: Option<ast::File>,
    /// What the text that did not parse may have declared; `None` when all of it parsed.
    pub damage: Option<Damage>,
    /// For each `import` of the AST, the file it names (if found).
    pub imports: Vec<Option<FileId>>,
    /// For each `import` of the AST, whether it is part of an import cycle.
    pub cyclic: Vec<bool>,
}

/// Everything read for one compilation.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub sources: SourceMap,
    pub files: Vec<LoadedFile>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn file(&self, id: FileId) -> &LoadedFile {
        &self.files[id.index()]
    }
}

/// Reads `roots` and, transitively, their imports.
pub(crate) fn load(fs: &dyn FileSystem, roots: &[PathBuf], include_dirs: &[PathBuf]) -> Loaded {
    let include_dirs: Vec<PathBuf> = if include_dirs.is_empty() {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for root in roots {
            let dir = match root.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    } else {
        include_dirs.to_vec()
    };
    let mut loader = Loader {
        fs,
        include_dirs,
        loaded: Loaded {
            sources: SourceMap::new(),
            files: Vec::new(),
            diagnostics: Vec::new(),
        },
        by_identity: HashMap::new(),
    };
    let mut queue = Vec::new();
    for root in roots {
        let name = loader.logical_name(root);
        let id = loader.read(root, name);
        loader.loaded.files[id.index()].is_root = true;
        queue.push(id);
    }
    // Breadth-first over imports; every file is parsed once.
    let mut next = 0;
    while next < loader.loaded.files.len() {
        let id = loader.loaded.files[next].id;
        next += 1;
        loader.resolve_imports(id);
    }
    loader.report_cycles();
    loader.mark_cyclic_imports();
    loader.loaded
}

struct Loader<'a> {
    fs: &'a dyn FileSystem,
    include_dirs: Vec<PathBuf>,
    loaded: Loaded,
    by_identity: HashMap<PathBuf, FileId>,
}

impl Loader<'_> {
    /// The name a root file is known by: its path relative to the first include directory
    /// that holds it, or the path as given.
    fn logical_name(&self, root: &Path) -> String {
        let identity = self.fs.identity(root);
        for dir in &self.include_dirs {
            let dir = self.fs.identity(dir);
            if let Ok(rel) = identity.strip_prefix(&dir) {
                return slash_path(rel);
            }
        }
        slash_path(&normalize(root))
    }

    /// Reads and parses a file once; later calls with the same file return the same id.
    fn read(&mut self, path: &Path, name: String) -> FileId {
        let identity = self.fs.identity(path);
        if let Some(&id) = self.by_identity.get(&identity) {
            return id;
        }
        let (id, problem) = match self.fs.read(path) {
            Ok(bytes) => self.loaded.sources.add_bytes(name, path, bytes),
            Err(e) => {
                let id = self.loaded.sources.add(name, path, String::new());
                (
                    id,
                    Some(Diagnostic::file_error(id, format!("cannot read file: {e}"))),
                )
            }
        };
        self.by_identity.insert(identity, id);
        let (ast, damage) = match problem {
            Some(diagnostic) => {
                self.loaded.diagnostics.push(diagnostic);
                (None, None)
            }
            None => {
                let parsed = recover::parse_file(id, self.loaded.sources.file(id).text());
                self.loaded.diagnostics.extend(parsed.errors);
                (Some(parsed.ast), parsed.damage)
            }
        };
        self.loaded.files.push(LoadedFile {
            id,
            is_root: false,
            ast,
            damage,
            imports: Vec::new(),
            cyclic: Vec::new(),
        });
        id
    }

    fn resolve_imports(&mut self, id: FileId) {
        let Some(ast) = &self.loaded.files[id.index()].ast else {
            return;
        };
        let imports: Vec<ast::Import> = ast.imports.clone();
        let mut resolved = Vec::with_capacity(imports.len());
        for import in &imports {
            resolved.push(self.resolve_import(import));
        }
        self.loaded.files[id.index()].imports = resolved;
    }

    fn resolve_import(&mut self, import: &ast::Import) -> Option<FileId> {
        let rel = Path::new(&import.path);
        if import.path.is_empty()
            || rel.is_absolute()
            || rel.components().any(|c| matches!(c, Component::ParentDir))
        {
            self.loaded.diagnostics.push(
                Diagnostic::error(
                    import.path_span,
                    format!("invalid import path `{}`", import.path),
                )
                .with_label("not a relative path inside the include directories")
                .with_help(
                    "import paths are relative to an include directory (`-I`), without `..`",
                ),
            );
            return None;
        }
        for dir in &self.include_dirs {
            let candidate = dir.join(rel);
            if self.fs.is_file(&candidate) {
                let name = slash_path(&normalize(rel));
                return Some(self.read(&candidate, name));
            }
        }
        let searched: Vec<String> = self
            .include_dirs
            .iter()
            .map(|d| format!("`{}`", d.display()))
            .collect();
        self.loaded.diagnostics.push(
            Diagnostic::error(
                import.path_span,
                format!("cannot find `{}` in the include directories", import.path),
            )
            .with_label("imported here")
            .with_help(format!(
                "searched {}; add the directory that holds it with `-I`",
                searched.join(", ")
            )),
        );
        None
    }

    /// Reports each import cycle once, at the `import` that closes it.
    fn report_cycles(&mut self) {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let n = self.loaded.files.len();
        let mut mark = vec![Mark::New; n];
        let mut stack: Vec<FileId> = Vec::new();
        let mut found = Vec::new();
        // Iterative depth-first search: (file, next import index).
        for start in 0..n {
            if mark[start] != Mark::New {
                continue;
            }
            let mut work: Vec<(usize, usize)> = vec![(start, 0)];
            mark[start] = Mark::Active;
            stack.push(self.loaded.files[start].id);
            while let Some(&mut (file, ref mut next)) = work.last_mut() {
                let imports = &self.loaded.files[file].imports;
                if *next < imports.len() {
                    let i = *next;
                    *next += 1;
                    let Some(target) = imports[i] else { continue };
                    match mark[target.index()] {
                        Mark::New => {
                            mark[target.index()] = Mark::Active;
                            stack.push(target);
                            work.push((target.index(), 0));
                        }
                        Mark::Active => {
                            let from = stack
                                .iter()
                                .position(|&f| f == target)
                                .expect("active files are on the stack");
                            let mut chain: Vec<FileId> = stack[from..].to_vec();
                            chain.push(target);
                            found.push((self.loaded.files[file].id, i, chain));
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[file] = Mark::Done;
                    stack.pop();
                    work.pop();
                }
            }
        }
        for (file, import_index, chain) in found {
            let ast = self.loaded.files[file.index()]
                .ast
                .as_ref()
                .expect("files with imports parsed");
            let import = &ast.imports[import_index];
            let names: Vec<&str> = chain
                .iter()
                .map(|&f| self.loaded.sources.file(f).name())
                .collect();
            self.loaded.diagnostics.push(
                Diagnostic::error(
                    import.path_span,
                    format!("import cycle: {}", names.join(" -> ")),
                )
                .with_label("this import closes the cycle")
                .with_help("move the shared declarations into a file that both can import"),
            );
        }
    }

    /// Marks the imports that lie on an import cycle: those whose file can reach the importing
    /// file again. The cycle is reported as an error; such an import is not also "unused".
    fn mark_cyclic_imports(&mut self) {
        let files = &self.loaded.files;
        let reaches = |from: FileId, to: FileId| {
            let mut seen = vec![false; files.len()];
            let mut stack = vec![from];
            while let Some(id) = stack.pop() {
                if id == to {
                    return true;
                }
                if !std::mem::replace(&mut seen[id.index()], true) {
                    stack.extend(files[id.index()].imports.iter().flatten());
                }
            }
            false
        };
        let cyclic: Vec<Vec<bool>> = files
            .iter()
            .map(|f| {
                f.imports
                    .iter()
                    .map(|target| target.is_some_and(|t| reaches(t, f.id)))
                    .collect()
            })
            .collect();
        for (file, cyclic) in self.loaded.files.iter_mut().zip(cyclic) {
            file.cyclic = cyclic;
        }
    }
}

/// A relative path with `/` separators.
fn slash_path(path: &Path) -> String {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}
