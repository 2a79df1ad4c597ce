//! Any text as the CALL of `moat call COMPONENT CALL`, read the way the CLI
//! and the control API read it: against the shop's real function types.
//! Reading either succeeds or says why, never panics; and what it reads
//! prints back as WAVE that reads again to the same values.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use moat::{Manifest, Plan, Runtime, values};

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let guests = std::env::var_os("MOAT_GUESTS")
            .map(PathBuf::from)
            .expect("set MOAT_GUESTS to the built components' directory");
        let toml = format!(
            "[components.product]\npath = {:?}\n[components.order]\npath = {:?}\n",
            guests.join("product.wasm"),
            guests.join("order.wasm")
        );
        let manifest = Manifest::parse(std::path::Path::new("fuzz/moat.toml"), &toml).unwrap();
        let data = std::env::temp_dir().join("moat-fuzz-data");
        Plan::new(manifest, Runtime::new(None).unwrap(), &data).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let component = if text.len() % 2 == 0 { "product" } else { "order" };
    let Ok((name, args)) = values::split_call(text) else { return };
    let Ok(function) = plan().function(component, name) else { return };
    let Ok(params) = values::parse_args(name, args, &function.ty, String::new) else { return };
    let printed: Vec<String> = params.iter().map(values::to_wave).collect();
    let again = values::parse_args(name, &format!("({})", printed.join(", ")), &function.ty, String::new)
        .unwrap_or_else(|e| panic!("{printed:?} printed from {text:?} does not read back: {e:#}"));
    assert_eq!(again, params, "{text:?} printed as {printed:?}");
});
