//! The path policy against a real directory tree (symlinks included), locations, names and
//! hosts.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::names::{job_id, plain_file_name};
use super::*;

/// A temporary tree: `root/` (the allowed root, with `data/in.jsonl`), `outside/secret`.
struct Tree {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical tempdir");
    let root = base.join("root");
    let outside = base.join("outside");
    std::fs::create_dir_all(root.join("data")).expect("root");
    std::fs::create_dir_all(&outside).expect("outside");
    std::fs::write(root.join("data/in.jsonl"), "{}\n").expect("input");
    std::fs::write(outside.join("secret"), "x\n").expect("secret");
    Tree {
        _dir: dir,
        base,
        root,
        outside,
    }
}

fn policy(roots: &[&Path]) -> AllowedPaths {
    let roots: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    AllowedPaths::under("taskmanager", &roots).expect("roots")
}

#[test]
fn the_root_itself_and_paths_inside_it_are_allowed_resolved() {
    let t = tree();
    let p = policy(&[&t.root]);
    assert_eq!(p.check_path(&t.root).expect("the root"), t.root);
    let file = t.root.join("data/in.jsonl");
    assert_eq!(p.check_path(&file).expect("a file inside"), file);
    // `..` that stays inside resolves to the place it names.
    let roundabout = t.root.join("data/../data/in.jsonl");
    assert_eq!(p.check_path(&roundabout).expect("inside"), file);
}

#[test]
fn paths_outside_and_dot_dot_escapes_are_refused_naming_the_roots() {
    let t = tree();
    let p = policy(&[&t.root]);
    let e = p.check_path(Path::new("/etc/passwd")).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, PathRefused::Outside { .. }), "{e:?}");
    assert!(
        text.contains("/etc/passwd")
            && text.contains(&t.root.display().to_string())
            && text.contains("--allow-path")
            && text.contains("taskmanager"),
        "{text}"
    );
    let escape = t.root.join("data/../../outside/secret");
    let e = p.check_path(&escape).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "resolved: `{}`",
            t.outside.join("secret").display()
        )),
        "the message shows where it leads: {e}"
    );
    // A sibling whose name starts like the root is not inside it.
    let sibling = t.base.join("root2");
    std::fs::create_dir(&sibling).expect("sibling");
    assert!(p.check_path(&sibling).is_err());
}

#[test]
fn a_symlink_inside_a_root_that_leads_out_is_refused() {
    let t = tree();
    symlink(&t.outside, t.root.join("link")).expect("symlink");
    symlink(t.root.join("data"), t.root.join("inner")).expect("symlink");
    let p = policy(&[&t.root]);
    let e = p.check_path(&t.root.join("link/secret")).unwrap_err();
    assert!(matches!(e, PathRefused::Outside { .. }), "{e:?}");
    // The same for a directory to be created below it (a sink's).
    assert!(p.check_path(&t.root.join("link/new/dir")).is_err());
    // A symlink that stays inside is followed and allowed.
    assert_eq!(
        p.check_path(&t.root.join("inner/in.jsonl"))
            .expect("inside"),
        t.root.join("data/in.jsonl")
    );
    // One to nowhere could be created through anywhere: refused.
    symlink(t.base.join("nowhere"), t.root.join("dangling")).expect("symlink");
    let e = p.check_path(&t.root.join("dangling/x")).unwrap_err();
    assert!(matches!(e, PathRefused::Unresolvable { .. }), "{e:?}");
}

#[test]
fn a_sink_directory_not_created_yet_is_checked_by_its_deepest_existing_ancestor() {
    let t = tree();
    let p = policy(&[&t.root]);
    let new = t.root.join("results/2024/out");
    assert_eq!(p.check_path(&new).expect("a new directory inside"), new);
    assert!(p.check_path(&t.outside.join("results")).is_err());
    // `..` below a name that does not exist cannot be resolved: refused, not guessed.
    let e = p
        .check_path(&t.root.join("results/../../outside"))
        .unwrap_err();
    assert!(matches!(e, PathRefused::Invalid { .. }), "{e:?}");
}

#[test]
fn no_roots_is_no_file_access_and_any_is_every_path_unchanged() {
    let none = AllowedPaths::under("jobmanager", &[]).expect("no roots");
    let e = none
        .check_path(Path::new("/tmp/x"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("jobmanager") && e.contains("--allow-path") && e.contains("KAPPA_ALLOW_PATHS"),
        "{e}"
    );
    let any = AllowedPaths::any("kappa local");
    assert!(any.is_any());
    assert_eq!(
        any.check_path(Path::new("/etc/passwd")).expect("any path"),
        PathBuf::from("/etc/passwd")
    );
    assert!(
        any.check_location("s3://anything/x", None).is_ok()
            && any.check_location("/elsewhere", None).is_ok()
    );
}

#[test]
fn roots_must_be_existing_directories() {
    let t = tree();
    let missing = t.base.join("missing").display().to_string();
    let e = AllowedPaths::under("taskmanager", std::slice::from_ref(&missing)).unwrap_err();
    assert!(
        matches!(e, RootError::Resolve { .. }) && e.to_string().contains(&missing),
        "{e}"
    );
    let file = t.root.join("data/in.jsonl").display().to_string();
    assert!(matches!(
        AllowedPaths::under("taskmanager", &[file]),
        Err(RootError::NotDir { .. })
    ));
    assert!(matches!(
        AllowedPaths::under("taskmanager", &["hdfs://nn/x".into()]),
        Err(RootError::Invalid { .. })
    ));
}

#[test]
fn savepoint_locations_are_taken_under_the_checkpoint_root_or_a_root() {
    let t = tree();
    let chk = t.base.join("chk");
    std::fs::create_dir(&chk).expect("chk");
    let chk_text = chk.display().to_string();
    let p = policy(&[&t.root]);
    let sp = format!("{chk_text}/savepoints/sp-1");
    assert!(p.check_location(&sp, Some(&chk_text)).is_ok());
    assert!(
        p.check_location(&format!("file://{sp}"), Some(&chk_text))
            .is_ok()
    );
    assert!(
        p.check_location(&t.root.join("sp").display().to_string(), Some(&chk_text))
            .is_ok()
    );
    let e = p
        .check_location(&format!("{chk_text}/../outside/sp"), Some(&chk_text))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&chk_text) && e.contains("--allow-path") && e.contains("resolved"),
        "{e}"
    );
    assert!(p.check_location("/tmp/elsewhere", Some(&chk_text)).is_err());
    assert!(matches!(
        p.check_location("ftp://x/y", Some(&chk_text)),
        Err(PathRefused::Invalid { .. })
    ));
}

#[test]
fn s3_locations_are_taken_in_the_checkpoint_roots_bucket_and_prefix_or_a_root_uri() {
    let p = AllowedPaths::under("jobmanager", &["s3://archive/savepoints".into()]).expect("roots");
    let root = Some("s3://ckpt/kappa");
    assert!(
        p.check_location("s3://ckpt/kappa/savepoints/sp-1", root)
            .is_ok()
    );
    assert!(p.check_location("s3a://ckpt/kappa", root).is_ok());
    assert!(
        p.check_location("s3://archive/savepoints/2024", root)
            .is_ok()
    );
    for bad in [
        "s3://ckpt/kappa2/sp",
        "s3://ckpt/other",
        "s3://other/kappa/sp",
        "s3://archive/else",
        "/tmp/sp",
    ] {
        assert!(p.check_location(bad, root).is_err(), "{bad} is refused");
    }
    let e = p.check_location("s3://ckpt/kappa/../x", root).unwrap_err();
    assert!(matches!(e, PathRefused::Invalid { .. }), "{e:?}");
}

#[test]
fn sink_stores_are_directories_under_a_root_or_s3_prefixes_under_an_s3_root() {
    let t = tree();
    let s3 = "s3://lake/kappa".to_string();
    let p = AllowedPaths::under("taskmanager", &[t.root.display().to_string(), s3]).expect("roots");
    let inside = t.root.join("lake");
    assert!(p.check_store(&inside.display().to_string()).is_ok());
    assert!(
        p.check_store(&format!("file://{}", inside.display()))
            .is_ok()
    );
    assert!(p.check_store("s3://lake/kappa/clicks").is_ok());
    for bad in [
        t.outside.display().to_string(),
        format!("{}/../outside", t.root.display()),
        "s3://lake/other".into(),
        "s3://other/kappa".into(),
    ] {
        let e = p.check_store(&bad).unwrap_err();
        assert!(matches!(e, PathRefused::Outside { .. }), "{bad}: {e:?}");
    }
    let e = AllowedPaths::none("taskmanager")
        .check_store("s3://lake/kappa")
        .unwrap_err();
    assert!(e.to_string().contains("--allow-path"), "{e}");
    assert!(
        AllowedPaths::any("kappa local")
            .check_store("s3://x/y")
            .is_ok()
    );
    assert!(
        AllowedPaths::any("kappa local")
            .check_store("hdfs://x/y")
            .is_err()
    );
}

#[test]
fn metadata_file_names_must_be_plain() {
    for ok in [
        "000012.sst",
        "MANIFEST-000005",
        "OPTIONS-000007",
        "CURRENT",
        ".hidden",
    ] {
        assert!(plain_file_name(ok).is_ok(), "{ok}");
    }
    let long = "a".repeat(256);
    for bad in [
        "",
        ".",
        "..",
        "../../x",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "a\0b",
        &long,
    ] {
        let e = plain_file_name(bad).unwrap_err().to_string();
        assert!(e.contains("not a plain file name"), "{bad:?}: {e}");
    }
    assert!(
        plain_file_name("../../x")
            .unwrap_err()
            .to_string()
            .contains("\"../../x\"")
    );
}

#[test]
fn job_ids_are_hex_and_dashes_of_bounded_length() {
    assert!(job_id("0f3a9c2b7d1e4f6a8b0c2d4e6f8a0b1c").is_ok());
    assert!(job_id("0f3a9c2b-7d1e-4f6a-8b0c-2d4e6f8a0b1c").is_ok());
    let long = "a".repeat(65);
    for bad in ["", "../x", "ABC", "j 1", "abc/def", "abc\0", &long] {
        assert!(job_id(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn postgres_hosts_are_allowed_by_name_any_case_or_all_without_a_list() {
    let any = AllowedHosts::only("jobmanager", &[]);
    assert!(any.is_any() && any.check(["anything.example"]).is_ok());
    let only = AllowedHosts::only("taskmanager", &["DB.internal".into(), "[::1]".into()]);
    assert!(only.check(["db.INTERNAL", "::1"]).is_ok());
    let e = only.check(["db.internal", "evil.example"]).unwrap_err();
    assert_eq!(e.host, "evil.example");
    let text = e.to_string();
    assert!(
        text.contains("evil.example")
            && text.contains("--allow-postgres-host")
            && text.contains("taskmanager"),
        "{text}"
    );
}
