//! The WIT doc comments of the contracts, for the OpenAPI document.
//! Components do not carry their WIT's comments, so they are read from the
//! app's WIT folders: `[http] wit` in moat.toml, or `wit/` beside it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::contract::InterfaceId;
use crate::manifest::Manifest;

/// Doc comments by interface (`shop:product/catalog@1.0.0`) and function.
#[derive(Default)]
pub struct WitDocs {
    interfaces: HashMap<String, Interface>,
}

#[derive(Default)]
struct Interface {
    docs: Option<String>,
    functions: HashMap<String, String>,
}

impl WitDocs {
    /// Reads the WIT folders the manifest names (or `wit/` beside it).
    /// Each is a package folder or a folder of them. A folder that does not
    /// parse is skipped with a warning: documentation never stops serving.
    pub fn for_manifest(manifest: &Manifest) -> WitDocs {
        let named = manifest.http.as_ref().map(|h| h.wit.clone()).unwrap_or_default();
        let folders: Vec<PathBuf> = if named.is_empty() {
            vec![manifest.root().join("wit")].into_iter().filter(|d| d.is_dir()).collect()
        } else {
            named.iter().map(|d| manifest.root().join(d)).collect()
        };
        let mut docs = WitDocs::default();
        for folder in folders {
            docs.read(&folder);
        }
        docs
    }

    fn read(&mut self, folder: &Path) {
        if has_wit_files(folder) {
            self.read_package(folder);
            return;
        }
        let Ok(entries) = std::fs::read_dir(folder) else {
            tracing::warn!(folder = %folder.display(), "cannot read this WIT folder; the OpenAPI document goes without its comments");
            return;
        };
        let mut packages: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| has_wit_files(p)).collect();
        packages.sort();
        for package in packages {
            self.read_package(&package);
        }
    }

    fn read_package(&mut self, folder: &Path) {
        let group = match wit_parser::UnresolvedPackageGroup::parse_dir(folder) {
            Ok(group) => group,
            Err(e) => {
                tracing::warn!(folder = %folder.display(), "this WIT does not parse, so the OpenAPI document goes without its comments: {e:#}");
                return;
            }
        };
        for package in std::iter::once(&group.main).chain(&group.nested) {
            let version = package.name.version.as_ref().map(|v| format!("@{v}")).unwrap_or_default();
            for (_, interface) in package.interfaces.iter() {
                let Some(name) = &interface.name else { continue };
                let key = format!("{}:{}/{name}{version}", package.name.namespace, package.name.name);
                let entry = self.interfaces.entry(key).or_default();
                entry.docs = interface.docs.contents.clone();
                for (function, f) in &interface.functions {
                    if let Some(docs) = &f.docs.contents {
                        entry.functions.insert(function.clone(), docs.clone());
                    }
                }
            }
        }
    }

    /// The doc comment of an interface.
    pub fn interface(&self, id: &InterfaceId) -> Option<&str> {
        self.interfaces.get(&id.to_string())?.docs.as_deref()
    }

    /// The doc comment of a function of an interface.
    pub fn function(&self, id: &InterfaceId, function: &str) -> Option<&str> {
        self.interfaces.get(&id.to_string())?.functions.get(function).map(String::as_str)
    }
}

fn has_wit_files(folder: &Path) -> bool {
    std::fs::read_dir(folder)
        .map(|entries| entries.filter_map(Result::ok).any(|e| e.path().extension().is_some_and(|x| x == "wit")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shops_comments_are_found_by_interface_and_function() {
        let mut docs = WitDocs::default();
        docs.read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit"));
        let catalog = InterfaceId::parse("shop:product/catalog@1.0.0");
        assert!(docs.interface(&catalog).unwrap().starts_with("The product catalog"));
        assert_eq!(
            docs.function(&catalog, "get-product"),
            Some("Returns the product with this identifier, if there is one.")
        );
        let newer = InterfaceId::parse("shop:product/catalog@1.1.0");
        assert!(docs.function(&newer, "search-products").is_some());
        assert!(docs.function(&catalog, "search-products").is_none());
    }
}
