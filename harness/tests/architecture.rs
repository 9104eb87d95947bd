//! The workspace's shape, checked on every test run: no source file imports
//! another that imports it back (through any chain of `use` or path
//! references, `crate::`, `super::`, `self::` or a child module's name), and
//! no crate holds more than 35% of the workspace's non-test lines.
//! ARCHITECTURE.md states both invariants; this test is what keeps them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace's library and binary crates, by folder.
const CRATES: &[&str] = &[
    "workloads",
    "common",
    "models",
    "fleet",
    "record",
    "search",
    "report",
    "harness",
];

/// Largest share of the non-test lines one crate may hold.
const MAX_CRATE_SHARE: f64 = 0.35;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness sits in the workspace")
        .to_path_buf()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source before its first `#[cfg(test)]`: what the crate ships.
fn non_test(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// A file's module path inside its crate (`lib.rs`, `main.rs`: the root).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Removes comments and string literals, so only code is scanned.
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3; // a char literal such as '{'
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Parses a path tree at `s` (`a::b::{c, d::e}`): every full path in it.
fn paths(s: &str) -> Vec<Vec<String>> {
    fn tree(s: &[u8], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut path = prefix;
        loop {
            while *i < s.len() && s[*i].is_ascii_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == b'{' {
                *i += 1;
                loop {
                    tree(s, i, path.clone(), out);
                    while *i < s.len() && s[*i].is_ascii_whitespace() {
                        *i += 1;
                    }
                    match s.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b'}') => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    while *i < s.len() && s[*i].is_ascii_whitespace() {
                        *i += 1;
                    }
                    if s.get(*i) == Some(&b'}') {
                        *i += 1;
                        return;
                    }
                }
            }
            let start = *i;
            while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_') {
                *i += 1;
            }
            if start == *i {
                out.push(path);
                return;
            }
            path.push(String::from_utf8_lossy(&s[start..*i]).into_owned());
            if s[*i..].starts_with(b"::") {
                *i += 2;
            } else {
                out.push(path);
                return;
            }
        }
    }
    let mut out = Vec::new();
    tree(s.as_bytes(), &mut 0, Vec::new(), &mut out);
    out
}

/// One crate's files and the files each refers to.
struct Graph {
    files: BTreeMap<Vec<String>, PathBuf>,
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

/// The module a path names, as the longest prefix that is a file.
fn resolve(files: &BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<Vec<String>> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| files.contains_key(p))
}

fn graph(krate: &Path) -> Graph {
    let src = krate.join("src");
    let mut list = Vec::new();
    rust_files(&src, &mut list);
    let files: BTreeMap<Vec<String>, PathBuf> = list
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let mut edges = BTreeMap::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        let code = strip(non_test(&text));
        let children: BTreeSet<String> = files
            .keys()
            .filter(|k| k.len() == module.len() + 1 && k.starts_with(module))
            .map(|k| k[module.len()].clone())
            .collect();
        let mut targets = BTreeSet::new();
        let bytes = code.as_bytes();
        for (i, _) in code.match_indices("::") {
            // The start of the path this `::` belongs to.
            let mut s = i;
            while s > 0 && (bytes[s - 1].is_ascii_alphanumeric() || bytes[s - 1] == b'_') {
                s -= 1;
            }
            if s >= 2 && &code[s - 2..s] == "::" {
                continue; // inside a longer path, seen from its start
            }
            for p in paths(&code[s..]) {
                let abs: Vec<String> = match p.first().map(String::as_str) {
                    Some("crate") => p[1..].to_vec(),
                    Some("super") => {
                        let mut base = module.clone();
                        let mut rest = &p[..];
                        while rest.first().map(String::as_str) == Some("super") {
                            base.pop();
                            rest = &rest[1..];
                        }
                        base.extend(rest.iter().cloned());
                        base
                    }
                    Some("self") => module.iter().chain(&p[1..]).cloned().collect(),
                    Some(first) if children.contains(first) => {
                        module.iter().chain(&p).cloned().collect()
                    }
                    _ => continue,
                };
                if let Some(t) = resolve(&files, &abs) {
                    if &t != module {
                        targets.insert(t);
                    }
                }
            }
        }
        edges.insert(module.clone(), targets);
    }
    Graph { files, edges }
}

/// Strongly connected components of more than one file (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(st: &mut State<'a>, v: &'a Vec<String>) {
        let n = st.index.len();
        st.index.insert(v, n);
        st.low.insert(v, n);
        st.stack.push(v);
        st.on.insert(v);
        for w in &st.g.edges[v] {
            if !st.index.contains_key(w) {
                visit(st, w);
                let lw = st.low[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if st.on.contains(w) {
                let iw = st.index[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if st.low[v] == st.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = st.stack.pop() {
                st.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                st.out.push(comp);
            }
        }
    }
    let mut st = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.files.keys() {
        if !st.index.contains_key(v) {
            visit(&mut st, v);
        }
    }
    st.out
}

#[test]
fn path_trees_parse_into_every_path() {
    let cases: &[(&str, &[&str])] = &[
        ("crate::a::B;", &["crate::a::B"]),
        (
            "crate::{a, b::{c, D}};",
            &["crate::a", "crate::b::c", "crate::b::D"],
        ),
        ("super::super::x::y(1)", &["super::super::x::y"]),
        ("crate::{a,\n    b,\n};", &["crate::a", "crate::b"]),
    ];
    for (text, want) in cases {
        let got: Vec<String> = paths(text).iter().map(|p| p.join("::")).collect();
        assert_eq!(&got, want, "{text}");
    }
}

#[test]
fn a_loop_of_two_files_is_found() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("src");
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").expect("lib");
    std::fs::write(src.join("a.rs"), "use crate::b::X;\n").expect("a");
    std::fs::write(src.join("b.rs"), "pub fn f() { super::a::g() }\n").expect("b");
    std::fs::write(
        src.join("c.rs"),
        "use crate::a;\n#[cfg(test)]\nuse crate::c;\n",
    )
    .expect("c");
    let found = cycles(&graph(dir.path()));
    assert_eq!(
        found.len(),
        1,
        "one loop (a <-> b), c only imports: {found:?}"
    );
    let mut names: Vec<String> = found[0].iter().map(|m| m.join("::")).collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn no_file_imports_another_that_imports_it_back() {
    let mut report = Vec::new();
    for name in CRATES {
        for comp in cycles(&graph(&workspace().join(name))) {
            let files: Vec<String> = comp
                .iter()
                .map(|m| {
                    if m.is_empty() {
                        "(root)".into()
                    } else {
                        m.join("::")
                    }
                })
                .collect();
            report.push(format!("{name}: {}", files.join(" <-> ")));
        }
    }
    assert!(
        report.is_empty(),
        "files that import each other in a loop (move what both need into a module of its own):\n{}",
        report.join("\n")
    );
}

#[test]
fn no_crate_holds_more_than_its_share_of_the_code() {
    let mut lines = BTreeMap::new();
    for name in CRATES {
        let mut list = Vec::new();
        rust_files(&workspace().join(name).join("src"), &mut list);
        let n: usize = list
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f).expect("read a source file");
                non_test(&text).lines().count()
            })
            .sum();
        lines.insert(*name, n);
    }
    let total: usize = lines.values().sum();
    assert!(total > 1000, "found only {total} lines: wrong folder?");
    for (name, n) in &lines {
        let share = *n as f64 / total as f64;
        assert!(
            share <= MAX_CRATE_SHARE,
            "{name} holds {:.1}% of the {total} non-test lines, more than {:.0}%: {lines:?}",
            share * 100.0,
            MAX_CRATE_SHARE * 100.0
        );
    }
}
