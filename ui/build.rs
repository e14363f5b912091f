//! Embeds the browser half of the UI (built by `scripts/build-ui` into `target/site/pkg`, or
//! `LOOKOUT_UI_PKG_DIR`) into the server, so the `lookout` binary is all a deployment needs.
//! Without it the server still renders every page; they are just not interactive.

use std::path::{Path, PathBuf};

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
    // scripts/build-ui also writes a gzip of the wasm (a third of its size) for browsers that take it
    let wasm_gz = dir.join("lookout_ui_bg.wasm.gz");
    let code = if ssr && js.is_file() && wasm.is_file() {
        for f in [&js, &wasm, &wasm_gz] {
            println!("cargo:rerun-if-changed={}", f.display());
        }
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let gz = if wasm_gz.is_file() && modified(&wasm_gz) >= modified(&wasm) {
            format!("include_bytes!({:?})", abs(&wasm_gz))
        } else {
            "&[]".to_string()
        };
        // the assets' validator: a hash of what this build embeds, so a reload revalidates
        // with a 304 instead of fetching the wasm again
        let mut bytes = std::fs::read(&js).unwrap_or_default();
        bytes.extend(std::fs::read(&wasm).unwrap_or_default());
        format!(
            "pub const HYDRATE: bool = true;\n\
             pub static JS: &[u8] = include_bytes!({:?});\n\
             pub static WASM: &[u8] = include_bytes!({:?});\n\
             pub static WASM_GZ: &[u8] = {gz};\n\
             pub const ETAG: &str = \"\\\"{:016x}\\\"\";\n",
            abs(&js),
            abs(&wasm),
            fnv1a(&bytes),
        )
    } else {
        "pub const HYDRATE: bool = false;\npub static JS: &[u8] = &[];\npub static WASM: &[u8] = &[];\n\
         pub static WASM_GZ: &[u8] = &[];\npub const ETAG: &str = \"\\\"none\\\"\";\n"
            .to_string()
    };
    if let Err(e) = std::fs::write(&out, code) {
        panic!("writing {}: {e}", out.display());
    }
}

fn abs(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// FNV-1a, 64 bits: enough to tell two builds' assets apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
