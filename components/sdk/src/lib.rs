//! Guest-side helpers for moat components.
//!
//! Layout:
//! - `bindings`: the `moat:platform` imports (store, log), generated once here so
//!   that every component maps them with `with:` instead of generating its own.
//! - `sql`: `execute` / `query` over the store, with parameters written as
//!   plain Rust values and rows read by column index.
//! - `log`: one function per level.
//!
//! A component's world `include`s `moat:platform/granted@0.1.0`; in its
//! `wit_bindgen::generate!` it adds
//! `with: { "moat:platform/store@0.1.0": moat_sdk::store, "moat:platform/log@0.1.0": moat_sdk::log::raw }`.
//!
//! It depends on nothing but `wit-bindgen` and the `moat:platform` WIT, so
//! it builds outside this repository too: `moat new component` vendors it.

#![warn(missing_docs)]

#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/moat-platform",
        world: "moat:platform/granted@0.1.0",
        generate_all,
    });
}

/// The raw store interface: what `sql` wraps.
pub use bindings::moat::platform::store;
pub use store::{Error as SqlError, Value};

pub mod sql {
    //! The component's own database. Every exported call is one unit of work
    //! (the host commits when it returns `ok`), so there is no transaction API.
    use super::store::{self, Error, Value};

    /// Runs one statement that returns no rows; returns the rows changed.
    pub fn execute(sql: &str, params: &[Value]) -> Result<u64, Error> {
        store::execute(sql, params)
    }

    /// Runs several `;`-separated statements that return no rows, such as a
    /// schema, one by one.
    pub fn execute_batch(sql: &str) -> Result<(), Error> {
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            store::execute(statement, &[])?;
        }
        Ok(())
    }

    /// Runs one query and returns its rows.
    pub fn query(sql: &str, params: &[Value]) -> Result<Vec<Row>, Error> {
        Ok(store::query(sql, params)?.into_iter().map(Row).collect())
    }

    /// Runs a query expected to return at most one row.
    pub fn query_one(sql: &str, params: &[Value]) -> Result<Option<Row>, Error> {
        Ok(query(sql, params)?.into_iter().next())
    }

    /// One row of a result, read by column index. A value of the wrong storage
    /// class is a bug in the component's own SQL, so the getters panic (the
    /// host turns that into a trap and rolls the unit of work back).
    pub struct Row(
        /// The columns, in the order the query selected them.
        pub Vec<Value>,
    );

    impl Row {
        /// The text in column `i`.
        pub fn text(&self, i: usize) -> String {
            match &self.0[i] {
                Value::Text(s) => s.clone(),
                other => panic!("column {i}: expected text, found {other:?}"),
            }
        }

        /// The integer in column `i`.
        pub fn int(&self, i: usize) -> i64 {
            match &self.0[i] {
                Value::Integer(n) => *n,
                other => panic!("column {i}: expected integer, found {other:?}"),
            }
        }

        /// The integer in column `i`, which the schema keeps non-negative.
        pub fn uint(&self, i: usize) -> u64 {
            u64::try_from(self.int(i)).unwrap_or_else(|_| panic!("column {i}: negative"))
        }
    }

    /// Text parameter.
    pub fn text(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    /// Integer parameter.
    pub fn int(n: impl Into<i64>) -> Value {
        Value::Integer(n.into())
    }
}

pub mod log {
    //! The host's log, tagged with this component's name.
    pub use super::bindings::moat::platform::log as raw;
    use raw::Level;

    /// Logs at `debug`: shown with `RUST_LOG=debug`.
    pub fn debug(message: &str) {
        raw::log(Level::Debug, message)
    }
    /// Logs at `info`: shown with `RUST_LOG=info`.
    pub fn info(message: &str) {
        raw::log(Level::Info, message)
    }
    /// Logs at `warn`: shown by default.
    pub fn warn(message: &str) {
        raw::log(Level::Warn, message)
    }
    /// Logs at `error`: shown by default.
    pub fn error(message: &str) {
        raw::log(Level::Error, message)
    }
}
