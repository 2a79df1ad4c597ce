//! Capability: `moat:platform/store`, a component's own SQLite database.
//!
//! The WIT side of [`crate::db::Db`]: each call is one guest statement,
//! judged by the sandbox as it is prepared (see `db`). A refusal or a limit
//! is an ordinary `error` the component can act on, never a trap.

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker};

use super::grant::{Asker, Grant};
use crate::contract::Interface;
use crate::db::Db;
use crate::platform::moat::platform::store::{self, Error, Value};

/// `moat:platform/store`, at a version this host serves.
pub fn grant(_asker: &Asker<'_>, import: &Interface) -> Option<Result<Grant, String>> {
    super::grant::platform_serves(import, "store").then_some(Ok(Grant::Store))
}

/// Serves `moat:platform/store` from the database `get` projects out of the state.
pub fn add_to_linker<T: 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> &mut Db) -> Result<()> {
    Ok(store::add_to_linker::<T, HasSelf<Db>>(linker, get)?)
}

impl store::Host for Db {
    fn execute(&mut self, sql: String, params: Vec<Value>) -> Result<u64, Error> {
        Db::execute(self, &sql, &params)
    }

    fn query(&mut self, sql: String, params: Vec<Value>) -> Result<Vec<Vec<Value>>, Error> {
        Db::query(self, &sql, &params)
    }
}
