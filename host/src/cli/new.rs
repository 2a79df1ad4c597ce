//! `moat new app NAME` and `moat new component NAME [--publishes]
//! [--subscribes PACKAGE]...`: a starting point outside this repository.
//!
//! A new component is a crate of its own that builds with one `cargo build
//! --target wasm32-wasip2 --release`: its contract package in `wit/NAME/`,
//! `moat:platform` and each package it subscribes to in `wit/deps/` (copied
//! from the app's WIT folders), moat-sdk vendored beside it, and a
//! `src/lib.rs` with a migration, two functions and, if asked, a handler.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use super::context::{Context, Exit};
use crate::manifest::Manifest;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// A new app: a folder with a moat.toml to list its components in.
    #[command(after_help = "Example:\n  moat new app shop")]
    App {
        /// The app's folder, created here.
        name: String,
    },
    /// A new component: a Rust crate that builds to a component of its own.
    #[command(after_help = "Examples:\n  moat new component shipping --subscribes shop:order\n  \
                            moat new component reviews --publishes\n\n\
                            Then: cd NAME && cargo build --target wasm32-wasip2 --release, and add it to moat.toml.")]
    Component {
        /// Its name: lowercase words joined by `-` (a WIT identifier).
        name: String,
        /// Publish events of its own (`NAME-event`), through the host.
        #[arg(long)]
        publishes: bool,
        /// Handle the events of this package (`shop:order`), found in the
        /// app's WIT folders ([http] wit in moat.toml, or wit/ beside it).
        #[arg(long, value_name = "PACKAGE")]
        subscribes: Vec<String>,
        /// Create it in this folder instead of ./NAME.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `wit-bindgen` as this moat's components use it.
const WIT_BINDGEN: &str = "0.63.0";

const PLATFORM: [(&str, &str); 4] = [
    ("log.wit", include_str!("../../../wit/moat-platform/log.wit")),
    ("schema.wit", include_str!("../../../wit/moat-platform/schema.wit")),
    ("store.wit", include_str!("../../../wit/moat-platform/store.wit")),
    ("worlds.wit", include_str!("../../../wit/moat-platform/worlds.wit")),
];
const SDK: &str = include_str!("../../../components/sdk/src/lib.rs");

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    ctx.here_only("new", "writes files on this machine")?;
    if ctx.json {
        bail!("`moat new` prints no data to format: drop --json");
    }
    match args.what {
        What::App { name } => new_app(&name),
        What::Component { name, publishes, subscribes, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            new_component(ctx, &name, publishes, &subscribes, &dir)
        }
    }
}

fn new_app(name: &str) -> Result<Exit> {
    let dir = Path::new(name);
    refuse_existing(dir)?;
    std::fs::create_dir_all(dir.join("wit")).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join("moat.toml"),
        "# One table per component: its name, and the .wasm file it is built to.\n\
         # Create one with `moat new component NAME` and build it, then list it here:\n\
         #\n\
         # [components.NAME]\n\
         # path = \"NAME/target/wasm32-wasip2/release/NAME.wasm\"\n",
    )?;
    println!("created {name}/moat.toml and {name}/wit/ (put the WIT packages your components share there)");
    println!("next: cd {name} && moat new component NAME");
    Ok(Exit::Ok)
}

fn new_component(ctx: &Context, name: &str, publishes: bool, subscribes: &[String], dir: &Path) -> Result<Exit> {
    if !is_wit_identifier(name) {
        bail!(
            "`{name}` is not a WIT identifier: use lowercase words joined by `-`, like `shipping` or `order-history`"
        );
    }
    refuse_existing(dir)?;
    // Each subscribed package's WIT, from the app's folders.
    let mut deps = Vec::new();
    for package in subscribes {
        deps.push(find_package(ctx, package)?);
    }
    let crate_name = name.replace('-', "_");
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut add = |path: &str, text: String| files.push((dir.join(path), text));

    add("Cargo.toml", cargo_toml(name));
    add(".gitignore", "/target\n".into());
    add(
        "moat-sdk/Cargo.toml",
        format!(
            "[package]\nname = \"moat-sdk\"\nversion = \"0.1.0\"\nedition = \"2024\"\ndescription = \"Guest-side helpers for moat components (vendored by moat new)\"\n\n[dependencies]\nwit-bindgen = \"={WIT_BINDGEN}\"\n"
        ),
    );
    add("moat-sdk/src/lib.rs", SDK.replace("\"../../wit/moat-platform\"", "\"../wit/deps/moat-platform\""));
    for (file, text) in PLATFORM {
        add(&format!("wit/deps/moat-platform/{file}"), text.to_string());
    }
    for dep in &deps {
        for (file, text) in &dep.files {
            add(&format!("wit/deps/{}/{file}", dep.folder), text.clone());
        }
    }
    add(&format!("wit/{name}/{name}.wit"), contract_wit(name, publishes));
    add("wit/world.wit", world_wit(name, publishes, &deps));
    add("src/lib.rs", lib_rs(name, publishes, &deps));
    add("README.md", readme(name, &crate_name, publishes, &deps));

    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("created {} ({} files): component `{name}`", dir.display(), files.len());
    println!("build it:  cd {} && cargo build --target wasm32-wasip2 --release", dir.display());
    println!(
        "add it to moat.toml:\n  [components.{name}]\n  path = \"{}\"",
        dir.join(format!("target/wasm32-wasip2/release/{crate_name}.wasm")).display()
    );
    Ok(Exit::Ok)
}

fn refuse_existing(dir: &Path) -> Result<()> {
    if dir.exists() {
        bail!("{} exists already: pick another name, or --dir for a folder that does not exist yet", dir.display());
    }
    Ok(())
}

fn is_wit_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.split('-').all(|word| {
            word.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// A package another component publishes, as found in the app's WIT.
struct Dep {
    /// `shop:order`.
    package: String,
    /// `1.0.0`.
    version: String,
    /// Its folder under `wit/deps/`.
    folder: String,
    /// Its `.wit` files.
    files: Vec<(String, String)>,
    /// The Rust module path of its handler export, `shop::order`.
    module: String,
    /// The Rust name of the handler's event type, `OrderEvent`.
    event_type: String,
}

/// Finds `package` (`shop:order`, or `shop:order@1.0.0`) in the app's WIT
/// folders: `[http] wit` in the manifest, or `wit/` beside it.
fn find_package(ctx: &Context, wanted: &str) -> Result<Dep> {
    let (wanted_name, wanted_version) = match wanted.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (wanted, None),
    };
    if !wanted_name.contains(':') {
        bail!("--subscribes {wanted}: name a package as NAMESPACE:NAME, like shop:order");
    }
    let manifest = Manifest::load(&ctx.manifest).with_context(|| {
        format!("--subscribes {wanted} reads the package's WIT from the app: run moat new where its moat.toml is, or pass --manifest")
    })?;
    let roots: Vec<PathBuf> = match manifest.http.as_ref().map(|h| h.wit.clone()).filter(|w| !w.is_empty()) {
        Some(named) => named.iter().map(|d| manifest.root().join(d)).collect(),
        None => vec![manifest.root().join("wit")],
    };
    let mut seen = Vec::new();
    let mut best: Option<(semver::Version, PathBuf, wit_parser::UnresolvedPackageGroup)> = None;
    for root in &roots {
        let Ok(entries) = std::fs::read_dir(root) else { continue };
        for folder in entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()) {
            let Ok(group) = wit_parser::UnresolvedPackageGroup::parse_dir(&folder) else { continue };
            let name = &group.main.name;
            let id = format!("{}:{}", name.namespace, name.name);
            let version = name.version.clone().unwrap_or_else(|| semver::Version::new(0, 0, 0));
            seen.push(format!("{id}@{version}"));
            if id == wanted_name
                && wanted_version.is_none_or(|v| v == version.to_string())
                && best.as_ref().is_none_or(|(b, ..)| version > *b)
            {
                best = Some((version, folder, group));
            }
        }
    }
    let Some((version, folder, group)) = best else {
        let shown: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        seen.sort();
        bail!(
            "no WIT package {wanted} in {}{}; it has: {}",
            shown.join(", "),
            crate::suggest::did_you_mean(wanted_name, seen.iter().map(|s| s.split('@').next().unwrap_or(s))),
            if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
        );
    };
    // The handler's event type: the one parameter of `handler.handle`.
    let package = &group.main;
    let handle = package
        .interfaces
        .iter()
        .find(|(_, i)| i.name.as_deref() == Some("handler"))
        .and_then(|(_, i)| i.functions.get("handle"))
        .with_context(|| format!("{wanted_name} has no `handler` interface with `handle`: it publishes no events"))?;
    let event = match handle.params.first().map(|p| &p.ty) {
        Some(wit_parser::Type::Id(id)) => package.types[*id].name.clone().unwrap_or_default(),
        _ => bail!("{wanted_name}'s handler.handle takes no named event type"),
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&folder)?.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "wit") {
            files.push((entry.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(&path)?));
        }
    }
    let (namespace, name) = wanted_name.split_once(':').expect("checked above");
    Ok(Dep {
        package: wanted_name.to_string(),
        version: version.to_string(),
        folder: format!("{namespace}-{name}"),
        files,
        module: format!("{}::{}", snake(namespace), snake(name)),
        event_type: camel(&event),
    })
}

fn snake(s: &str) -> String {
    s.replace('-', "_")
}

fn camel(s: &str) -> String {
    s.split('-').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect()
}

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = "={WIT_BINDGEN}"
moat-sdk = {{ path = "moat-sdk" }}

# A component is small and self-contained.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A workspace of its own, wherever it is put.
[workspace]
"#
    )
}

fn contract_wit(name: &str, publishes: bool) -> String {
    let mut wit = format!(
        r#"package app:{name}@0.1.0;

/// Shared types of `{name}`'s contract.
interface types {{
    /// A note kept by `{name}`.
    record note {{
        /// Its number, from 1.
        id: u64,
        /// What it says.
        text: string,
    }}
}}

/// What `{name}` serves: the contract other components and HTTP clients
/// call. Change it to what your service does.
interface {name} {{
    use types.{{note}};

    /// Keeps a note and returns it. An empty text is refused.
    add-note: func(text: string) -> result<note, string>;

    /// Every note, oldest first.
    list-notes: func() -> list<note>;
}}
"#
    );
    if publishes {
        wit.push_str(&format!(
            r#"
/// What happens in `{name}`, published in the order it happens.
interface events {{
    use types.{{note}};

    /// Something that happened.
    variant {name}-event {{
        /// A note was added.
        noted(note),
    }}
}}

/// Publishing `{name}`'s events: granted to `{name}` alone.
interface publish {{
    use events.{{{name}-event}};

    /// Publishes an event in the current unit of work.
    publish: func(event: {name}-event);
}}

/// Handling `{name}`'s events: exported by each subscriber.
interface handler {{
    use events.{{{name}-event}};

    /// Applies one event, in order, exactly once; `err` undoes it and
    /// the host retries.
    handle: func(event: {name}-event) -> result<_, string>;
}}
"#
        ));
    }
    wit
}

fn world_wit(name: &str, publishes: bool, deps: &[Dep]) -> String {
    let mut lines = vec![
        "    include moat:platform/granted@0.1.0;".to_string(),
        "    export moat:platform/schema@0.1.0;".to_string(),
        format!("    export app:{name}/{name}@0.1.0;"),
    ];
    if publishes {
        lines.push(format!("    import app:{name}/publish@0.1.0;"));
    }
    for dep in deps {
        lines.push(format!("    export {}/handler@{};", dep.package, dep.version));
    }
    format!("package component:{name};\n\n/// The `{name}` component.\nworld {name} {{\n{}\n}}\n", lines.join("\n"))
}

fn lib_rs(name: &str, publishes: bool, deps: &[Dep]) -> String {
    let snake_name = snake(name);
    let mut paths = vec!["\"wit/deps/moat-platform\"".to_string()];
    paths.extend(deps.iter().map(|d| format!("\"wit/deps/{}\"", d.folder)));
    paths.push(format!("\"wit/{name}\""));
    paths.push("\"wit/world.wit\"".into());
    let mut uses = vec![
        "use bindings::exports::moat::platform::schema::{self, SchemaVersion};".to_string(),
        format!("use bindings::exports::app::{snake_name}::{snake_name};"),
        format!("use bindings::app::{snake_name}::types::Note;"),
        "use moat_sdk::sql::{self, text};".to_string(),
    ];
    if publishes {
        uses.push(format!("use bindings::app::{snake_name}::events::{};", camel(&format!("{name}-event"))));
        uses.push(format!("use bindings::app::{snake_name}::publish::publish;"));
    }
    let publish = if publishes {
        format!("    publish(&{}::Noted(note.clone()));\n", camel(&format!("{name}-event")))
    } else {
        String::new()
    };
    let mut handlers = String::new();
    for dep in deps {
        handlers.push_str(&format!(
            r#"
/// {package} events: kept as notes, so `list-notes` shows what was heard.
/// Replace this with the copy of their data this service needs.
impl bindings::exports::{module}::handler::Guest for Component {{
    fn handle(event: bindings::exports::{module}::handler::{event}) -> Result<(), String> {{
        keep(&format!("{package}: {{event:?}}")).map(|_| ())
    }}
}}
"#,
            package = dep.package,
            module = dep.module,
            event = dep.event_type,
        ));
    }
    format!(
        r#"//! The `{name}` component: owns its notes (`app:{name}/{name}`).
//!
//! Every exported call runs as one unit of work on this component's own
//! database: it commits when the call returns `ok`, and rolls back on `err`
//! or a trap. Built with `cargo build --target wasm32-wasip2 --release`.

mod bindings {{
    wit_bindgen::generate!({{
        path: [{paths}],
        world: "component:{name}/{name}",
        with: {{
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        }},
        generate_all,
    }});
}}

{uses}

struct Component;

bindings::export!(Component with_types_in bindings);

/// The schema this build creates: later builds with the same major serve it.
const SCHEMA: SchemaVersion = SchemaVersion {{ major: 1, minor: 0 }};

impl schema::Guest for Component {{
    /// Creates the tables on a new database; the host runs it at load and
    /// at every swap, in a unit of work of its own.
    fn migrate(found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {{
        match found {{
            None => {{
                sql::execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)", &[])
                    .map_err(|e| format!("creating the notes table: {{e:?}}"))?;
                Ok(SCHEMA)
            }}
            Some(v) if v.major == SCHEMA.major => Ok(v),
            Some(v) => Err(format!("schema {{}}.{{}} is not one this build serves", v.major, v.minor)),
        }}
    }}
}}

impl {snake_name}::Guest for Component {{
    fn add_note(text: String) -> Result<Note, String> {{
        if text.trim().is_empty() {{
            return Err("a note needs some text".into());
        }}
        let note = keep(&text)?;
{publish}        Ok(note)
    }}

    fn list_notes() -> Vec<Note> {{
        sql::query("SELECT id, text FROM notes ORDER BY id", &[])
            .expect("reading notes")
            .iter()
            .map(|row| Note {{ id: row.uint(0), text: row.text(1) }})
            .collect()
    }}
}}

/// Stores a note and returns it.
fn keep(note: &str) -> Result<Note, String> {{
    sql::execute("INSERT INTO notes (text) VALUES (?)", &[text(note)]).map_err(|e| format!("{{e:?}}"))?;
    let id = sql::query_one("SELECT max(id) FROM notes", &[])
        .map_err(|e| format!("{{e:?}}"))?
        .map_or(0, |row| row.uint(0));
    Ok(Note {{ id, text: note.to_string() }})
}}
{handlers}"#,
        paths = paths.join(", "),
        uses = uses.join("\n"),
    )
}

fn readme(name: &str, crate_name: &str, publishes: bool, deps: &[Dep]) -> String {
    let mut about = vec![format!("- serves `app:{name}/{name}@0.1.0` (`wit/{name}/`): `add-note`, `list-notes`")];
    if publishes {
        about.push(format!(
            "- publishes `{name}-event`s (`app:{name}/publish`); subscribers export `app:{name}/handler`"
        ));
    }
    for dep in deps {
        about.push(format!(
            "- handles {}@{} events (`wit/deps/{}/`, copied from the app)",
            dep.package, dep.version, dep.folder
        ));
    }
    format!(
        r#"# {name}

A moat component, made by `moat new component`. It
{about}

```sh
cargo build --target wasm32-wasip2 --release     # rustup target add wasm32-wasip2, once
```

Then list it in the app's `moat.toml`:

```toml
[components.{name}]
path = "{name}/target/wasm32-wasip2/release/{crate_name}.wasm"
```

and call it: `moat call {name} 'add-note("hello")'`, `moat call {name} 'list-notes()'`.
A newer build goes live with `moat swap {name} target/wasm32-wasip2/release/{crate_name}.wasm`.

- `src/lib.rs`: the migration, the functions, the handlers. Its database is
  its own: `moat_sdk::sql` runs statements on it, nothing else can.
- `wit/{name}/`: the contract. Others depend on it, so change it by
  adding; a new major version is a new contract.
- `wit/deps/`: `moat:platform` (what the host grants) and the packages it
  handles. `moat-sdk/`: the guest helpers, vendored.
- A new subscriber starts from the oldest event its publisher still keeps
  (`events.retention_secs`, a week by default), then follows new ones.
"#,
        about = about.join("\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_wit_identifiers() {
        assert!(is_wit_identifier("shipping"));
        assert!(is_wit_identifier("order-history2"));
        assert!(!is_wit_identifier("Shipping"));
        assert!(!is_wit_identifier("order_history"));
        assert!(!is_wit_identifier("-x"));
        assert!(!is_wit_identifier(""));
        assert_eq!(camel("order-event"), "OrderEvent");
    }
}
