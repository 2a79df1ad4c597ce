//! The name of an interface, `namespace:package/interface@version`, and
//! which interfaces are part of a public contract.

use std::fmt;

/// The interface a subscriber exports: `P/handler`, function `handle`.
pub const HANDLER: &str = "handler";

/// Whether an interface is part of a public contract: one a user, another
/// component or another host may call. That is an interface of a package
/// (`ns:pkg/iface`), other than `moat:platform` (which the host grants or
/// calls), WASI, and a package's `handler` (which the host alone calls, to
/// deliver events). Exports outside any package (componentize-py's `init`,
/// root-level functions) are not public either.
pub fn is_public(id: &InterfaceId) -> bool {
    id.package.contains(':')
        && id.package != "moat:platform"
        && !id.package.starts_with("wasi:")
        && id.interface != HANDLER
}

/// The parts of `namespace:package/interface@version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceId {
    /// `shop:product`.
    pub package: String,
    /// `catalog`.
    pub interface: String,
    /// `1.0.0`, if the name carries one.
    pub version: Option<semver::Version>,
}

impl InterfaceId {
    /// Parses `ns:pkg/iface@version`; a plain name (a root function, or a
    /// world-level import) has an empty package.
    pub fn parse(name: &str) -> InterfaceId {
        let (path, version) = match name.split_once('@') {
            Some((path, v)) => (path, semver::Version::parse(v).ok()),
            None => (name, None),
        };
        match path.split_once('/') {
            Some((package, interface)) => {
                InterfaceId { package: package.to_string(), interface: interface.to_string(), version }
            }
            None => InterfaceId { package: String::new(), interface: path.to_string(), version },
        }
    }

    /// `shop:product/catalog`, without the version.
    pub fn unversioned(&self) -> String {
        format!("{}/{}", self.package, self.interface)
    }

    /// Whether an export at `self`'s version satisfies an import at
    /// `wanted`'s: same package and interface, and by semver the same major
    /// version (the same minor for 0.x) with a version no lower.
    pub fn serves(&self, wanted: &InterfaceId) -> bool {
        if self.package != wanted.package || self.interface != wanted.interface {
            return false;
        }
        match (&self.version, &wanted.version) {
            (None, None) => true,
            (Some(have), Some(want)) => {
                let same_line = if have.major == 0 {
                    want.major == 0 && have.minor == want.minor
                } else {
                    have.major == want.major
                };
                same_line && have >= want
            }
            _ => false,
        }
    }
}

impl fmt::Display for InterfaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.package.is_empty() {
            f.write_str(&self.interface)?;
        } else {
            write!(f, "{}/{}", self.package, self.interface)?;
        }
        if let Some(v) = &self.version {
            write!(f, "@{v}")?;
        }
        Ok(())
    }
}
