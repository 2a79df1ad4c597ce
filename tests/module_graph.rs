//! The host's modules import only downward: no file of `host/src` uses one
//! that uses it back, directly or through others, and neither does any
//! top-level module (a directory counts as one). A module's `mod` lines and
//! `pub use` re-exports count as its uses of its children, so a child never
//! reaches into its parent's file.
//!
//! Read from the source itself: every `crate::...`, `super::...`, `self::...`
//! and child-module path outside comments and strings, resolved to the file
//! that defines the module it names. `cargo test module_graph -- --nocapture`
//! prints both graphs; `MODULE_GRAPH_SRC=DIR` checks another tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path: `["events", "dispatcher"]`; the crate root is `[]`.
type Module = Vec<String>;

#[test]
fn host_modules_import_only_downward() {
    // MODULE_GRAPH_SRC reads another tree (an older checkout, say) instead.
    let src = std::env::var_os("MODULE_GRAPH_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let files = module_files(&src);
    let modules: BTreeSet<Module> = files.keys().cloned().collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    let mut unresolved = Vec::new();
    for (module, path) in &files {
        if module.is_empty() {
            continue; // lib.rs: the layout, declaring everything.
        }
        let text = std::fs::read_to_string(path).unwrap();
        // Unit tests (at the end of a file) are the module's own business.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let code = code_only(text);
        let children: Vec<String> = declared_children(&code);
        let mut targets = BTreeSet::new();
        for child in &children {
            targets.insert([module.clone(), vec![child.clone()]].concat());
        }
        for reference in references(&code, &children) {
            let absolute = match absolute(module, &reference) {
                Some(a) => a,
                None => continue,
            };
            match resolve(&modules, &absolute) {
                Some(target) if target.is_empty() => {
                    unresolved.push(format!("{}: crate::{}", show(module), absolute.join("::")))
                }
                Some(target) => {
                    targets.insert(target);
                }
                None => {}
            }
        }
        targets.remove(module);
        edges.insert(module.clone(), targets);
    }
    assert!(
        unresolved.is_empty(),
        "these name items through the crate root's re-exports; name the module that defines them:\n{}",
        unresolved.join("\n")
    );

    let mut top: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, tos) in &edges {
        let f = vec![from[0].clone()];
        let entry = top.entry(f.clone()).or_default();
        for to in tos {
            let t = vec![to[0].clone()];
            if t != f {
                entry.insert(t);
            }
        }
    }
    println!("top-level modules ({}), each with the modules it uses:", top.len());
    for (m, tos) in &top {
        println!("  {} -> {}", show(m), tos.iter().map(show).collect::<Vec<_>>().join(", "));
    }
    println!("files ({}), {} uses in all", edges.len(), edges.values().map(BTreeSet::len).sum::<usize>());
    for (m, tos) in &edges {
        println!("  {} -> {}", show(m), tos.iter().map(show).collect::<Vec<_>>().join(", "));
    }
    for (what, graph) in [("top-level modules", &top), ("files", &edges)] {
        let cycles = cycles(graph);
        assert!(
            cycles.is_empty(),
            "{what} import each other, directly or through one another (each line one such group):\n{}",
            cycles.iter().map(|c| c.iter().map(show).collect::<Vec<_>>().join(", ")).collect::<Vec<_>>().join("\n")
        );
    }
}

fn show(m: &Module) -> String {
    if m.is_empty() { "crate".into() } else { m.join("::") }
}

/// Every `.rs` file of the library, by module path.
fn module_files(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            let file = parts.pop().unwrap();
            match file.as_str() {
                "main.rs" if parts.is_empty() => continue,
                "lib.rs" if parts.is_empty() => {}
                "mod.rs" => {}
                other => parts.push(other.trim_end_matches(".rs").to_string()),
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The source with comments, strings and character literals blanked out.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
            continue;
        }
        if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars.get(i.wrapping_sub(1)).is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) == Some(&'"') {
                j += 1;
                loop {
                    if j >= chars.len() {
                        break;
                    }
                    if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
                continue;
            }
        }
        if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1;
            continue;
        }
        if c == '\'' {
            // A character literal ('x', '\n', '\u{1b}'), not a lifetime.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
                continue;
            }
            if chars.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `mod x;` declarations.
fn declared_children(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "mod");
        if let Some(at) = at
            && let Some(name) = words.get(at + 1)
            && name.ends_with(';')
        {
            out.push(name.trim_end_matches(';').to_string());
        }
    }
    out
}

/// Every path that starts with `crate`, `super`, `self` or a child module,
/// with use-trees (`crate::{a, b::c}`) expanded.
fn references(code: &str, children: &[String]) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == ':');
        if starts_word && (chars[i].is_alphabetic() || chars[i] == '_') {
            let (word, after) = ident(&chars, i);
            let rooted = matches!(word.as_str(), "crate" | "super" | "self") || children.contains(&word);
            if rooted && chars.get(after) == Some(&':') && chars.get(after + 1) == Some(&':') {
                let (paths, end) = tree(&chars, i);
                out.extend(paths);
                i = end;
                continue;
            }
            i = after;
            continue;
        }
        i += 1;
    }
    out
}

fn ident(chars: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    (chars[start..i].iter().collect(), i)
}

fn skip_space(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Parses a path or use-tree starting at `i`: the expanded paths, and where it ends.
fn tree(chars: &[char], i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    let mut i = skip_space(chars, i);
    loop {
        if chars.get(i) == Some(&'{') {
            let mut out = Vec::new();
            i += 1;
            loop {
                i = skip_space(chars, i);
                match chars.get(i) {
                    Some('}') => return (out, i + 1),
                    Some(',') => i += 1,
                    Some('*') => {
                        out.push(prefix.clone());
                        i += 1;
                    }
                    Some(_) => {
                        let (paths, end) = tree(chars, i);
                        out.extend(paths.into_iter().map(|p| [prefix.clone(), p].concat()));
                        i = end;
                    }
                    None => return (out, i),
                }
            }
        }
        if !chars.get(i).is_some_and(|c| c.is_alphabetic() || *c == '_') {
            return (vec![prefix], i);
        }
        let (word, after) = ident(chars, i);
        prefix.push(word);
        i = after;
        if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            i = skip_space(chars, i + 2);
            continue;
        }
        return (vec![prefix], i);
    }
}

/// A path relative to `module` made absolute (crate-rooted, without `crate`).
fn absolute(module: &Module, reference: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = module.clone();
    let mut rest = reference;
    match rest.first()?.as_str() {
        "crate" => {
            base.clear();
            rest = &rest[1..];
        }
        "self" => rest = &rest[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => {} // a child module of this one
    }
    Some([base, rest.to_vec()].concat())
}

/// The longest prefix of `path` that is a module with a file.
fn resolve(modules: &BTreeSet<Module>, path: &[String]) -> Option<Module> {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p))
}

/// The cycles of a graph (strongly connected components of more than one node).
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    let nodes: Vec<&Module> = graph.keys().collect();
    let mut index = BTreeMap::new();
    let mut low = BTreeMap::new();
    let mut on_stack = BTreeSet::new();
    let mut stack: Vec<&Module> = Vec::new();
    let mut counter = 0;
    let mut found = Vec::new();
    #[allow(clippy::too_many_arguments, reason = "Tarjan's algorithm, recursive")]
    fn visit<'a>(
        v: &'a Module,
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: &mut BTreeMap<&'a Module, usize>,
        low: &mut BTreeMap<&'a Module, usize>,
        on_stack: &mut BTreeSet<&'a Module>,
        stack: &mut Vec<&'a Module>,
        counter: &mut usize,
        found: &mut Vec<Vec<Module>>,
    ) {
        index.insert(v, *counter);
        low.insert(v, *counter);
        *counter += 1;
        stack.push(v);
        on_stack.insert(v);
        for w in graph.get(v).into_iter().flatten() {
            let Some((w, _)) = graph.get_key_value(w) else { continue };
            if !index.contains_key(w) {
                visit(w, graph, index, low, on_stack, stack, counter, found);
                let lw = low[w];
                low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if on_stack.contains(w) {
                let iw = index[w];
                low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if low[v] == index[v] {
            let mut component = Vec::new();
            while let Some(w) = stack.pop() {
                on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.reverse();
                found.push(component);
            }
        }
    }
    for v in nodes {
        if !index.contains_key(v) {
            visit(v, graph, &mut index, &mut low, &mut on_stack, &mut stack, &mut counter, &mut found);
        }
    }
    found
}
