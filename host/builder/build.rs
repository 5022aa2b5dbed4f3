//! Joins the WIT package's files (`wit/*.wit`: one package, a file per interface and one for
//! the world) into the one file a JavaScript build hands componentize-js, so a new interface
//! file needs no line here.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("reading wit/")
        .map(|e| e.expect("reading wit/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wit"))
        .collect();
    // The world's file first: it carries the package's docs.
    files.sort_by_key(|p| (p.file_name().is_none_or(|n| n != "world.wit"), p.clone()));
    let mut joined = String::new();
    for (i, path) in files.iter().enumerate() {
        println!("cargo::rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(path).expect("reading a wit file");
        for line in text.lines() {
            // One `package` line for the joined file: the first file's.
            if i > 0 && line.starts_with("package ") {
                continue;
            }
            joined.push_str(line);
            joined.push('\n');
        }
        joined.push('\n');
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("cloudfn.wit");
    std::fs::write(out, joined).expect("writing the joined WIT");
}
