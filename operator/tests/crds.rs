//! The committed CRD YAML (`crds/` and the Helm chart's copy) is exactly what the Rust types
//! generate. On failure, regenerate: `cargo run --release -p weir-operator --bin crdgen`.

use std::path::PathBuf;

#[test]
fn committed_crds_match_the_types() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .expect("workspace root");
    let mut drift = Vec::new();
    for (file, crd) in weir_operator::crd::all() {
        let want = weir_operator::crd::to_yaml(&crd).expect("YAML");
        for dir in weir_operator::crd::OUTPUT_DIRS {
            let path = root.join(dir).join(file);
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            if have != want {
                drift.push(path.display().to_string());
            }
        }
    }
    assert!(
        drift.is_empty(),
        "out of date (run `cargo run --release -p weir-operator --bin crdgen`): {drift:?}"
    );
}

#[test]
fn every_crd_has_status_printer_columns_short_names_and_the_weir_category() {
    for (file, crd) in weir_operator::crd::all() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["weir".to_string()][..]),
            "{file}"
        );
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{file}"
        );
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{file}: status subresource"
        );
        assert!(
            v.additional_printer_columns
                .as_ref()
                .is_some_and(|c| c.len() >= 4),
            "{file}"
        );
    }
}
