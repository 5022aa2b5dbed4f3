//! `cloudfn build`: builds a function crate into a checked wasm32-wasip2 component of the
//! cloud-function world, or a CloudBase-style Node.js function folder into one from JavaScript.

use clap::Args;
use cloudfn_builder::{self as build, BuildOptions};
use std::path::PathBuf;

/// `cloudfn build`.
#[derive(Debug, Args)]
pub struct BuildCommand {
    /// The function crate (its directory or Cargo.toml), or a JavaScript function folder
    /// (package.json and index.js exporting `main`).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Where a JavaScript function's component is written [default: FOLDER/.cloudfn/NAME.wasm].
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

impl BuildCommand {
    /// `cloudfn build [PATH]`.
    pub fn execute(&self) -> anyhow::Result<i32> {
        if cloudfn_builder::js::is_js_function(&self.path) {
            let (built, t) = cloudfn_builder::js::build_js(&self.path, self.out.as_deref())?;
            println!(
                "built {} ({:.1} MB), a component of the cloud-function world, from JavaScript \
                 (dependencies {} ms, bundle {} ms, componentize {} ms); deploy it with \
                 `cloudfn deploy --env ENV --name {} {}`",
                built.wasm.display(),
                built.size as f64 / (1024.0 * 1024.0),
                t.deps_ms,
                t.bundle_ms,
                t.componentize_ms,
                built.package,
                built.wasm.display()
            );
            return Ok(0);
        }
        if self.out.is_some() {
            anyhow::bail!(
                "--out is for JavaScript functions; a crate's component is in its target dir"
            );
        }
        let built = build::build_crate(&self.path, &BuildOptions::default())?;
        println!(
            "built {} ({:.1} KB), a component of the cloud-function world",
            built.wasm.display(),
            built.size as f64 / 1024.0
        );
        Ok(0)
    }
}
