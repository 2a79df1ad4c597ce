//! Host bindings for `moat:platform`, generated from `wit/moat-platform`:
//! the interfaces every component is granted. `store` and `log` implement
//! them.

wasmtime::component::bindgen!({
    path: "../wit/moat-platform",
    world: "moat:platform/granted",
});
