//! The libraries as crates.io would get them: `cargo package` of every publishable member,
//! each built from its packaged sources against the others' packages.

use crate::{cargo, root, run};

/// Workspace members that are tools or test harnesses, never published (`publish = false`).
pub const UNPUBLISHED: &[&str] = &["xtask", "benches", "xen-oracle"];

/// Checks each member's manifest ([`missing_metadata`]), then packages every library of the
/// workspace (the members not in [`UNPUBLISHED`]) and builds each from its packaged sources, as
/// crates.io would: missing metadata, path dependencies without
/// versions and files left out of a package all fail here. Uncommitted changes are packaged as
/// they are (`--allow-dirty`): the step checks packaging, not git.
pub fn check() -> Result<(), String> {
    for m in members()? {
        let path = root().join(&m).join("Cargo.toml");
        let manifest = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let missing = missing_metadata(&m, &manifest);
        if !missing.is_empty() {
            return Err(format!("{m}/Cargo.toml lacks: {}", missing.join(", ")));
        }
    }
    let mut c = cargo();
    c.args(["package", "--workspace", "--allow-dirty", "--quiet"]);
    for krate in UNPUBLISHED {
        c.args(["--exclude", krate]);
    }
    run(&mut c)
}

/// The workspace members (directory names, which are the package names) from the root manifest.
pub fn members() -> Result<Vec<String>, String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).map_err(|e| format!("Cargo.toml: {e}"))?;
    let start = manifest.find("members = [").ok_or("no `members = [` in Cargo.toml")?;
    let list = &manifest[start..];
    let end = list.find(']').ok_or("unterminated members list")?;
    Ok(list[..end].split('"').skip(1).step_by(2).map(str::to_string).collect())
}

/// What a manifest lacks to be published (empty when complete), or whether an unpublished one
/// says `publish = false`.
pub fn missing_metadata(name: &str, manifest: &str) -> Vec<&'static str> {
    if UNPUBLISHED.contains(&name) {
        return if manifest.contains("\npublish = false") { vec![] } else { vec!["publish = false"] };
    }
    const FIELDS: [(&str, &str); 8] = [
        ("description", "\ndescription = "),
        ("license", "\nlicense.workspace = true"),
        ("version", "\nversion.workspace = true"),
        ("rust-version", "\nrust-version.workspace = true"),
        ("readme", "\nreadme = "),
        ("keywords", "\nkeywords = "),
        ("categories", "\ncategories = "),
        ("[package.metadata.docs.rs]", "\n[package.metadata.docs.rs]"),
    ];
    let mut missing: Vec<&'static str> =
        FIELDS.iter().filter(|(_, text)| !manifest.contains(text)).map(|&(field, _)| field).collect();
    if manifest.contains("\npublish = false") {
        missing.push("publishable (it says publish = false)");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_has_its_crates_io_metadata() {
        let members = members().expect("members");
        assert!(members.len() >= 10, "{members:?}");
        for m in &members {
            let manifest = std::fs::read_to_string(root().join(m).join("Cargo.toml")).expect("member manifest");
            assert_eq!(missing_metadata(m, &manifest), Vec::<&str>::new(), "{m}/Cargo.toml");
        }
    }

    #[test]
    fn workspace_dependencies_on_members_carry_versions() {
        let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
        let section = manifest.split("[workspace.dependencies]").nth(1).expect("workspace dependencies");
        for line in section.lines().take_while(|l| !l.starts_with('[')).filter(|l| l.contains("path = ")) {
            let name = line.split_whitespace().next().unwrap_or_default();
            if !UNPUBLISHED.contains(&name) {
                assert!(line.contains("version = "), "path dependency without a version: {line}");
            }
        }
    }

    #[test]
    fn an_incomplete_manifest_is_reported() {
        let bare = "[package]\nname = \"x\"\ndescription = \"d\"\nlicense.workspace = true\n";
        let missing = missing_metadata("x", bare);
        assert!(missing.contains(&"keywords") && missing.contains(&"[package.metadata.docs.rs]"), "{missing:?}");
        assert!(!missing.contains(&"description"), "{missing:?}");
        assert_eq!(missing_metadata("xtask", "[package]\nname = \"xtask\"\n"), ["publish = false"]);
    }
}
