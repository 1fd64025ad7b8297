//! docs/alerts.md lists every alert kind the code can raise.

use keywarden::model::FindingKind;

#[test]
fn the_catalog_lists_every_kind() {
    let docs = include_str!("../docs/alerts.md");
    let catalog = docs
        .split("## Catalog")
        .nth(1)
        .expect("a Catalog section")
        .split("\n## ")
        .next()
        .unwrap();
    let missing: Vec<&str> = FindingKind::ALL
        .iter()
        .map(|kind| kind.as_str())
        .filter(|name| !catalog.contains(&format!("| `{name}` |")))
        .collect();
    assert!(missing.is_empty(), "docs/alerts.md lacks: {missing:?}");
}
