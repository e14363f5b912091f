//! Embeds the browser half of the UI (built by `scripts/build-ui` into `target/site/pkg`, or
//! `LOOKOUT_UI_PKG_DIR`) into the server, so the `lookout` binary is all a deployment needs.
//! Without it the server still renders every page; they are just not interactive.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LOOKOUT_UI_PKG_DIR");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("ui_assets.rs");
    let ssr = std::env::var("CARGO_FEATURE_SSR").is_ok();
    let dir = std::env::var("LOOKOUT_UI_PKG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/site/pkg"));
    // watch the directory (created if missing, so cargo has something to watch) and the files
    let _ = std::fs::create_dir_all(&dir);
    println!("cargo:rerun-if-changed={}", dir.display());
    let js = dir.join("lookout_ui.js");
    let wasm = dir.join("lookout_ui_bg.wasm");
    let code = if ssr && js.is_file() && wasm.is_file() {
        println!("cargo:rerun-if-changed={}", js.display());
        println!("cargo:rerun-if-changed={}", wasm.display());
        format!(
            "pub const HYDRATE: bool = true;\n\
             pub static JS: &[u8] = include_bytes!({:?});\n\
             pub static WASM: &[u8] = include_bytes!({:?});\n",
            js.canonicalize().unwrap_or(js.clone()),
            wasm.canonicalize().unwrap_or(wasm.clone()),
        )
    } else {
        "pub const HYDRATE: bool = false;\npub static JS: &[u8] = &[];\npub static WASM: &[u8] = &[];\n"
            .to_string()
    };
    if let Err(e) = std::fs::write(&out, code) {
        panic!("writing {}: {e}", out.display());
    }
}
