//! `crdgen`: writes Weir's CustomResourceDefinitions from the Rust types.
//!
//! `cargo run -p weir-operator --bin crdgen` writes `crds/*.yaml` and the Helm chart's copy in
//! `charts/weir/crds/`; `operator/tests/crds.rs` fails when either differs from the types.
//! `--print` writes them all to stdout instead, as one multi-document stream.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("operator crate has no parent directory"))?;
    let print = std::env::args().any(|a| a == "--print");
    for (file, crd) in weir_operator::crd::all() {
        let yaml = weir_operator::crd::to_yaml(&crd)?;
        if print {
            println!("---\n{yaml}");
            continue;
        }
        for dir in weir_operator::crd::OUTPUT_DIRS {
            let dir = root.join(dir);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(file), &yaml)?;
            eprintln!("wrote {}", dir.join(file).display());
        }
    }
    Ok(())
}
