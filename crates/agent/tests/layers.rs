//! The dependency order of the library's modules, as `crates/agent/layers.txt`
//! writes it (once; the README quotes it), read from the source itself.
//!
//! Every path into the crate in every file of `src/`, its tests included (a
//! `use` of `crate::…`, `super::…` or `self::…`, and a qualified path such
//! as `decide::next_run(…)` through an imported module), is resolved to the
//! file that defines what it names, through `use` re-exports. Then:
//!
//! - a module uses only modules on lines of `layers.txt` below its own;
//! - no two files use each other, directly or round a circle (a `mod.rs`
//!   that re-exports its files does not use them by that: the path is
//!   followed to the file that defines the item);
//! - every module of `lib.rs` is in `layers.txt` once, and the README quotes
//!   it as it is.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The order, written once.
const LAYERS: &str = include_str!("../layers.txt");

/// The modules of each line of `layers.txt`, top first.
fn layers() -> Vec<Vec<String>> {
    LAYERS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split_whitespace().map(String::from).collect())
        .collect()
}

#[test]
fn every_import_follows_the_order_of_layers_txt() {
    let crate_ = Crate::read();
    let line_of: HashMap<String, usize> = layers()
        .iter()
        .enumerate()
        .flat_map(|(line, modules)| modules.iter().map(move |m| (m.clone(), line)))
        .collect();
    let mut violations = Vec::new();
    for edge in crate_.edges() {
        let (Some(from), Some(to)) = (
            crate_.files[edge.from].module.first(),
            crate_.files[edge.to].module.first(),
        ) else {
            continue;
        };
        if from == to {
            continue;
        }
        let (Some(&from_line), Some(&to_line)) = (line_of.get(from), line_of.get(to)) else {
            violations.push(format!(
                "{}: `{from}` or `{to}` is not in layers.txt",
                edge.place(&crate_)
            ));
            continue;
        };
        if to_line <= from_line {
            violations.push(format!(
                "{}: `{from}` uses `{to}`, which layers.txt puts {} it",
                edge.place(&crate_),
                if to_line == from_line {
                    "on its line"
                } else {
                    "above"
                }
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the order of crates/agent/layers.txt:\n{}",
        violations.join("\n")
    );
}

#[test]
fn no_two_files_use_each_other() {
    let crate_ = Crate::read();
    let edges = crate_.edges();
    let mut graph: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for edge in &edges {
        graph.entry(edge.from).or_default().insert(edge.to);
    }
    let circles: Vec<String> = strongly_connected(crate_.files.len(), &graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| {
            let inside: Vec<String> = edges
                .iter()
                .filter(|e| component.contains(&e.from) && component.contains(&e.to))
                .map(|e| format!("  {}", e.place(&crate_)))
                .collect();
            format!(
                "{}:\n{}",
                component
                    .iter()
                    .map(|&file| crate_.files[file].rel.as_str())
                    .collect::<Vec<_>>()
                    .join(" <-> "),
                inside.join("\n")
            )
        })
        .collect();
    assert!(
        circles.is_empty(),
        "files that use each other:\n{}",
        circles.join("\n")
    );
}

#[test]
fn layers_txt_names_every_module_once_and_the_readme_quotes_it() {
    let crate_ = Crate::read();
    let listed: Vec<String> = layers().into_iter().flatten().collect();
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "a module twice: {listed:?}");
    let modules: BTreeSet<&String> = crate_
        .files
        .iter()
        .filter_map(|file| file.module.first())
        .collect();
    assert_eq!(
        unique, modules,
        "layers.txt (left) and the modules of src/ (right) differ"
    );

    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let after = readme
        .split_once("crates/agent/layers.txt")
        .map(|(_, after)| after)
        .expect("the README names crates/agent/layers.txt");
    let block = after
        .split_once("```text\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("the README quotes layers.txt in a ```text block after naming it");
    let quoted: Vec<Vec<String>> = block
        .lines()
        .map(|line| line.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(quoted, layers(), "the README's quote of layers.txt");
}

/// A file of `src/`.
struct File {
    /// Its path under `src/`, for messages.
    rel: String,
    /// Its module path (`controller::decide` for `controller/decide/mod.rs`).
    module: Vec<String>,
    /// Its text without comments, strings and character literals (newlines
    /// kept, so offsets give line numbers).
    code: String,
}

/// A `use` declaration, flattened: what `name` (or, for a glob, every name
/// of `target`) stands for in `scope`.
struct Import {
    scope: Vec<String>,
    /// A `pub use`: a re-export, which is a use of its target only where
    /// the name is used in the file besides.
    public: bool,
    target: Vec<String>,
    /// `None` for a glob.
    name: Option<String>,
    file: usize,
    offset: usize,
}

/// An inline module (`mod tests { … }`) and where its body lies.
struct Inline {
    file: usize,
    module: Vec<String>,
    start: usize,
    end: usize,
}

struct Crate {
    files: Vec<File>,
    /// Every module, inline ones too, with the file it is in.
    modules: HashMap<Vec<String>, usize>,
    inlines: Vec<Inline>,
    imports: Vec<Import>,
}

/// One file using another, at a place in it.
struct Edge {
    from: usize,
    to: usize,
    offset: usize,
    path: String,
}

impl Edge {
    fn place(&self, crate_: &Crate) -> String {
        let from = &crate_.files[self.from];
        let line = from.code[..self.offset].matches('\n').count() + 1;
        format!(
            "src/{}:{line} uses `crate::{}` (src/{})",
            from.rel, self.path, crate_.files[self.to].rel
        )
    }
}

impl Crate {
    fn read() -> Crate {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut paths = Vec::new();
        collect_rs(&src, &mut paths);
        paths.sort();
        let mut files = Vec::new();
        for path in paths {
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            // The binary is a crate of its own.
            if rel == "main.rs" {
                continue;
            }
            let mut module: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(String::from)
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            files.push(File {
                rel,
                module,
                code: strip(&text),
            });
        }
        let mut modules: HashMap<Vec<String>, usize> = files
            .iter()
            .enumerate()
            .map(|(index, file)| (file.module.clone(), index))
            .collect();
        let mut inlines = Vec::new();
        for (index, file) in files.iter().enumerate() {
            // In the order they open: those around one come before it.
            let found = inline_modules(&file.code);
            for (name, start, end) in &found {
                let mut module = file.module.clone();
                module.extend(
                    found
                        .iter()
                        .filter(|(_, s, e)| s < start && start < e)
                        .map(|(outer, _, _)| outer.clone()),
                );
                module.push(name.clone());
                modules.insert(module.clone(), index);
                inlines.push(Inline {
                    file: index,
                    module,
                    start: *start,
                    end: *end,
                });
            }
        }
        let mut crate_ = Crate {
            files,
            modules,
            inlines,
            imports: Vec::new(),
        };
        let mut imports = Vec::new();
        for (index, file) in crate_.files.iter().enumerate() {
            for (offset, _, tree, public) in use_declarations(&file.code) {
                let scope = crate_.scope_at(index, offset);
                for (path, name) in flatten_use(&tree) {
                    // An import of a crate (std, kube, …) says nothing here.
                    let Some(target) = crate_.absolute(&scope, &path, index, &imports) else {
                        continue;
                    };
                    imports.push(Import {
                        scope: scope.clone(),
                        public,
                        target,
                        name,
                        file: index,
                        offset,
                    });
                }
            }
        }
        crate_.imports = imports;
        crate_
    }

    /// The module at `offset` of `file`: its own, or an inline one.
    fn scope_at(&self, file: usize, offset: usize) -> Vec<String> {
        self.inlines
            .iter()
            .filter(|inline| inline.file == file && inline.start < offset && offset < inline.end)
            .max_by_key(|inline| inline.module.len())
            .map(|inline| inline.module.clone())
            .unwrap_or_else(|| self.files[file].module.clone())
    }

    /// `path`, written in `scope`, from the crate's root; `None` when it
    /// names another crate.
    fn absolute(
        &self,
        scope: &[String],
        path: &[String],
        file: usize,
        imports: &[Import],
    ) -> Option<Vec<String>> {
        let first = path.first()?;
        let mut resolved: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "self" => scope.to_vec(),
            "super" => {
                let mut module = scope.to_vec();
                let mut rest = path;
                while rest.first().map(String::as_str) == Some("super") {
                    module.pop();
                    rest = &rest[1..];
                }
                module.extend(rest.iter().cloned());
                return Some(module);
            }
            _ => {
                let mut child = scope.to_vec();
                child.push(first.clone());
                if self.modules.contains_key(&child) {
                    scope.to_vec()
                } else {
                    // A name imported in this scope or one around it.
                    let import = imports
                        .iter()
                        .filter(|i| i.file == file && scope.starts_with(&i.scope))
                        .filter(|i| i.name.as_deref() == Some(first.as_str()))
                        .max_by_key(|i| i.scope.len())?;
                    let mut target = import.target.clone();
                    target.extend(path[1..].iter().cloned());
                    return Some(target);
                }
            }
        };
        let skip = usize::from(matches!(first.as_str(), "crate" | "self"));
        resolved.extend(path[skip..].iter().cloned());
        Some(resolved)
    }

    /// The file that defines what `path` (from the root) names: down its
    /// modules, then through the imports of the last one.
    fn resolve(&self, path: &[String], depth: usize) -> Option<usize> {
        if depth > 32 {
            return None;
        }
        let mut module: Vec<String> = Vec::new();
        for (i, segment) in path.iter().enumerate() {
            let mut child = module.clone();
            child.push(segment.clone());
            if self.modules.contains_key(&child) {
                module = child;
                continue;
            }
            let rest = &path[i + 1..];
            if let Some(import) = self
                .imports
                .iter()
                .find(|import| import.scope == module && import.name.as_ref() == Some(segment))
            {
                let mut target = import.target.clone();
                target.extend(rest.iter().cloned());
                return self.resolve(&target, depth + 1);
            }
            for glob in self
                .imports
                .iter()
                .filter(|import| import.scope == module && import.name.is_none())
            {
                let found = self.modules.get(&glob.target).is_some_and(|&file| {
                    defines(&self.files[file].code, segment)
                        || self.imports.iter().any(|import| {
                            import.scope == glob.target && import.name.as_ref() == Some(segment)
                        })
                });
                if found {
                    let mut target = glob.target.clone();
                    target.push(segment.clone());
                    target.extend(rest.iter().cloned());
                    return self.resolve(&target, depth + 1);
                }
            }
            break;
        }
        self.modules.get(&module).copied()
    }

    /// Every file using another, once per pair (at the first place).
    fn edges(&self) -> Vec<Edge> {
        let mut seen = BTreeSet::new();
        let mut edges = Vec::new();
        let mut add = |from: usize, to: Option<usize>, offset: usize, path: String| {
            if let Some(to) = to {
                if to != from && !self.files[to].module.is_empty() && seen.insert((from, to)) {
                    edges.push(Edge {
                        from,
                        to,
                        offset,
                        path,
                    });
                }
            }
        };
        let used_besides: Vec<BTreeSet<String>> = self
            .files
            .iter()
            .map(|file| names_outside_uses(&file.code))
            .collect();
        for import in &self.imports {
            if import.public
                && !import
                    .name
                    .as_ref()
                    .is_some_and(|name| used_besides[import.file].contains(name))
            {
                continue;
            }
            let to = self.resolve(&import.target, 0);
            let mut path = import.target.join("::");
            if let Some(name) = &import.name {
                if import.target.last() != Some(name) {
                    path = format!("{path} as {name}");
                }
            }
            add(import.file, to, import.offset, path);
        }
        for (index, file) in self.files.iter().enumerate() {
            let uses: Vec<(usize, usize)> = use_declarations(&file.code)
                .into_iter()
                .map(|(start, end, _, _)| (start, end))
                .collect();
            for (offset, path) in qualified_paths(&file.code) {
                if uses
                    .iter()
                    .any(|(start, end)| *start <= offset && offset <= *end)
                {
                    continue;
                }
                let scope = self.scope_at(index, offset);
                if let Some(target) = self.absolute(&scope, &path, index, &self.imports) {
                    add(index, self.resolve(&target, 0), offset, target.join("::"));
                }
            }
        }
        edges
    }
}

fn collect_rs(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The text with comments, string and character literals blanked (newlines
/// kept), so that only code is read.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && (i == 0 || !is_ident(chars[i - 1]))
            && {
                let mut j = i + if c == 'b' { 2 } else { 1 };
                while chars.get(j) == Some(&'#') {
                    j += 1;
                }
                chars.get(j) == Some(&'"')
            }
        {
            // A raw string: r"…", r#"…"#, br"…".
            let mut j = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &skipped in &chars[i..j.min(chars.len())] {
                blank(&mut out, skipped);
            }
            i = j;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            if i < chars.len() {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '\'' {
            // A character literal ('x', '\n', '\''), or a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'' && j > i + 2)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for &skipped in &chars[i..=end] {
                        blank(&mut out, skipped);
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Identifiers and `::`, `{`, `}`, `,`, `*`, `;` of a piece of code, with
/// their offsets (in bytes).
fn tokens(code: &str) -> Vec<(usize, String)> {
    let mut tokens = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut word = String::from(c);
            while let Some(&(_, next)) = chars.peek() {
                if next.is_alphanumeric() || next == '_' {
                    word.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push((at, word));
        } else if c == ':' && chars.peek().map(|&(_, n)| n) == Some(':') {
            chars.next();
            tokens.push((at, "::".into()));
        } else if !c.is_whitespace() {
            tokens.push((at, c.to_string()));
        }
    }
    tokens
}

/// Every `use` declaration: where it starts and ends, its tree (the text
/// after `use`, up to the `;`) and whether it is public (`pub use`,
/// `pub(crate) use`, …).
fn use_declarations(code: &str) -> Vec<(usize, usize, String, bool)> {
    let tokens = tokens(code);
    let mut found = Vec::new();
    for (i, (at, token)) in tokens.iter().enumerate() {
        if token != "use" {
            continue;
        }
        let Some(end) = tokens[i..].iter().position(|(_, t)| t == ";") else {
            continue;
        };
        let tree_start = tokens.get(i + 1).map_or(*at, |(start, _)| *start);
        let tree_end = tokens[i + end].0;
        let public = match i.checked_sub(1).map(|before| tokens[before].1.as_str()) {
            Some("pub") => true,
            Some(")") => tokens[..i]
                .iter()
                .rposition(|(_, t)| t == "(")
                .and_then(|open| open.checked_sub(1))
                .is_some_and(|before| tokens[before].1 == "pub"),
            _ => false,
        };
        found.push((
            *at,
            tree_end,
            code[tree_start..tree_end].to_string(),
            public,
        ));
    }
    found
}

/// A `use` tree flattened: each path and the name it binds (`None` for a
/// glob).
fn flatten_use(tree: &str) -> Vec<(Vec<String>, Option<String>)> {
    let tokens: Vec<String> = tokens(tree).into_iter().map(|(_, t)| t).collect();
    let mut out = Vec::new();
    let mut position = 0;
    flatten_tree(&tokens, &mut position, &[], &mut out);
    out
}

fn flatten_tree(
    tokens: &[String],
    position: &mut usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix.to_vec();
    while *position < tokens.len() {
        let token = tokens[*position].as_str();
        match token {
            "::" => *position += 1,
            "{" => {
                *position += 1;
                loop {
                    match tokens.get(*position).map(String::as_str) {
                        None => return,
                        Some("}") => {
                            *position += 1;
                            return;
                        }
                        Some(",") => *position += 1,
                        Some(_) => flatten_tree(tokens, position, &path, out),
                    }
                }
            }
            "*" => {
                *position += 1;
                out.push((path, None));
                return;
            }
            "," | "}" => break,
            _ => {
                path.push(token.to_string());
                *position += 1;
                let name = if tokens.get(*position).map(String::as_str) == Some("as") {
                    *position += 2;
                    tokens.get(*position - 1).cloned()
                } else {
                    None
                };
                let ends = !matches!(tokens.get(*position).map(String::as_str), Some("::"));
                if ends {
                    if path.last().map(String::as_str) == Some("self") {
                        path.pop();
                    }
                    // `as _` binds no name, but the import is a use all the same.
                    let name = name.or_else(|| path.last().cloned());
                    out.push((path, name));
                    return;
                }
            }
        }
    }
}

/// Every inline module (`mod name { … }`): its name and the offsets of its
/// braces.
fn inline_modules(code: &str) -> Vec<(String, usize, usize)> {
    let tokens = tokens(code);
    let mut found = Vec::new();
    for i in 0..tokens.len().saturating_sub(2) {
        if tokens[i].1 == "mod" && tokens[i + 2].1 == "{" {
            let start = tokens[i + 2].0;
            let mut depth = 0;
            let mut end = code.len();
            for (at, token) in &tokens[i + 2..] {
                match token.as_str() {
                    "{" => depth += 1,
                    "}" => {
                        depth -= 1;
                        if depth == 0 {
                            end = *at;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            found.push((tokens[i + 1].1.clone(), start, end));
        }
    }
    found
}

/// Every path of two segments or more outside `use` declarations
/// (`decide::next_run`, `crate::report::bounded`): its offset and segments.
fn qualified_paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let tokens = tokens(code);
    let is_ident = |t: &str| {
        t.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts = is_ident(&tokens[i].1)
            && tokens.get(i + 1).map(|(_, t)| t.as_str()) == Some("::")
            && (i == 0 || tokens[i - 1].1 != "::")
            // Not the path of a visibility: `pub(in crate::sync)`.
            && (i == 0 || tokens[i - 1].1 != "in");
        if !starts {
            i += 1;
            continue;
        }
        let offset = tokens[i].0;
        let mut path = vec![tokens[i].1.clone()];
        let mut j = i + 1;
        while tokens.get(j).map(|(_, t)| t.as_str()) == Some("::")
            && tokens.get(j + 1).is_some_and(|(_, t)| is_ident(t))
        {
            path.push(tokens[j + 1].1.clone());
            j += 2;
        }
        if path.len() > 1 {
            found.push((offset, path));
        }
        i = j.max(i + 1);
    }
    found
}

/// The identifiers of `code` outside its `use` declarations.
fn names_outside_uses(code: &str) -> BTreeSet<String> {
    let uses = use_declarations(code);
    tokens(code)
        .into_iter()
        .filter(|(at, _)| {
            !uses
                .iter()
                .any(|(start, end, _, _)| start <= at && at <= end)
        })
        .map(|(_, token)| token)
        .collect()
}

/// Whether `code` defines an item called `name`.
fn defines(code: &str, name: &str) -> bool {
    let tokens: Vec<String> = tokens(code).into_iter().map(|(_, t)| t).collect();
    tokens.windows(2).any(|pair| {
        pair[1] == name
            && matches!(
                pair[0].as_str(),
                "fn" | "struct" | "enum" | "const" | "static" | "type" | "trait" | "union" | "mod"
            )
    })
}

/// Tarjan's strongly connected components of the graph on `0..nodes`.
fn strongly_connected(nodes: usize, graph: &BTreeMap<usize, BTreeSet<usize>>) -> Vec<Vec<usize>> {
    struct State<'a> {
        graph: &'a BTreeMap<usize, BTreeSet<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        components: Vec<Vec<usize>>,
    }
    fn visit(state: &mut State<'_>, node: usize) {
        state.index[node] = Some(state.next);
        state.low[node] = state.next;
        state.next += 1;
        state.stack.push(node);
        state.on_stack[node] = true;
        let empty = BTreeSet::new();
        let successors: Vec<usize> = state
            .graph
            .get(&node)
            .unwrap_or(&empty)
            .iter()
            .copied()
            .collect();
        for successor in successors {
            match state.index[successor] {
                None => {
                    visit(state, successor);
                    state.low[node] = state.low[node].min(state.low[successor]);
                }
                Some(index) if state.on_stack[successor] => {
                    state.low[node] = state.low[node].min(index);
                }
                Some(_) => {}
            }
        }
        if Some(state.low[node]) == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack[member] = false;
                component.push(member);
                if member == node {
                    break;
                }
            }
            component.sort();
            state.components.push(component);
        }
    }
    let mut state = State {
        graph,
        index: vec![None; nodes],
        low: vec![0; nodes],
        on_stack: vec![false; nodes],
        stack: Vec::new(),
        next: 0,
        components: Vec::new(),
    };
    for node in 0..nodes {
        if state.index[node].is_none() {
            visit(&mut state, node);
        }
    }
    state.components
}

#[test]
fn the_reader_of_the_source_finds_what_it_must() {
    // The pieces above, on the cases the agent's source has.
    assert_eq!(
        flatten_use("{super::progress::{self, Wait as W}, crate::x::*}"),
        vec![
            (
                vec!["super".into(), "progress".into()],
                Some("progress".into())
            ),
            (
                vec!["super".into(), "progress".into(), "Wait".into()],
                Some("W".into())
            ),
            (vec!["crate".into(), "x".into()], None),
        ]
    );
    assert_eq!(
        flatten_use("crate::x::Trait as _"),
        vec![(
            vec!["crate".into(), "x".into(), "Trait".into()],
            Some("_".into())
        )]
    );
    let code =
        strip("let a = \"crate::x::y\"; // crate::z\nlet c = '\\''; fn f<'a>(x: &'a str) {}");
    assert!(!code.contains("crate::"), "{code}");
    assert!(code.contains("fn f<'a>(x: &'a str)"), "{code}");
    assert_eq!(code.lines().count(), 2);
    assert_eq!(
        qualified_paths("decide::next_run(x); Vec::<u8>::new(); a.b::<T>()"),
        vec![(0, vec!["decide".to_string(), "next_run".to_string()])]
    );
    assert_eq!(
        inline_modules("mod a { mod b { } } mod c;")
            .into_iter()
            .map(|(name, _, _)| name)
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(defines("pub(crate) fn next_run() {}", "next_run"));
    assert!(qualified_paths("pub(in crate::sync) mod tests {}").is_empty());
    let graph: BTreeMap<usize, BTreeSet<usize>> = [
        (0, [1].into()),
        (1, [2].into()),
        (2, [0].into()),
        (3, [0].into()),
    ]
    .into();
    let mut circles: Vec<Vec<usize>> = strongly_connected(4, &graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .collect();
    circles.sort();
    assert_eq!(circles, vec![vec![0, 1, 2]]);
}
