//! File sinks in an upgrade. v2 writes into a shadow directory `<dir>.<upgrade>` beside the
//! live one, marked as the upgrade's by a hidden file. The diff reads the committed JSON-lines
//! files of both by row key. The cut-over exchanges the two directories with one
//! `renameat2(RENAME_EXCHANGE)`: a reader that opens files by path sees all of v1's files or
//! all of v2's. The shadow path then holds v1's files and becomes the backup
//! `<dir>.<upgrade>_v1`.
//!
//! Where the swap is after a crash is read from the directories: the marker in the live one
//! means the exchange happened; no marker, no shadow and a backup mean the swap finished.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use arrow::datatypes::Schema;
use kappa_job::template::{KeyTemplate, TemplatePart};
use rustix::fs::{CWD, RenameFlags, renameat_with};
use serde_json::Value;

use super::UpgradeSinkError;
use crate::file::list_files;

/// The hidden file that marks a directory as the shadow of upgrade `upgrade`.
fn marker(dir: &Path, upgrade: &str) -> PathBuf {
    dir.join(format!(".kappa-upgrade-{upgrade}"))
}

/// The file that keeps, in v2's directory, the rows only v1 has when history is incomplete.
fn kept_file(dir: &Path, upgrade: &str) -> PathBuf {
    dir.join(format!("part-kappa-upgrade-{upgrade}-v1-kept.jsonl"))
}

fn io(what: &str, path: &Path) -> impl Fn(std::io::Error) -> UpgradeSinkError + use<> {
    let (what, path) = (what.to_string(), path.to_path_buf());
    move |source| UpgradeSinkError::Io {
        what: what.clone(),
        path: path.clone(),
        source,
    }
}

/// Whether `path` exists (an error other than "not there" is one).
fn exists(path: &Path) -> Result<bool, UpgradeSinkError> {
    path.try_exists().map_err(io("looking for", path))
}

/// Creates the shadow directory `shadow` of upgrade `upgrade` with its marker; one that is
/// there with the marker is taken as it is.
pub fn create_shadow(shadow: &Path, upgrade: &str) -> Result<(), UpgradeSinkError> {
    std::fs::create_dir_all(shadow).map_err(io("creating the shadow directory", shadow))?;
    let mark = marker(shadow, upgrade);
    if !exists(&mark)? {
        // A directory left from an earlier try has nothing else in it, or is not ours.
        if std::fs::read_dir(shadow)
            .map_err(io("listing", shadow))?
            .next()
            .is_some()
        {
            return Err(UpgradeSinkError::NotShadow {
                path: shadow.to_path_buf(),
            });
        }
        std::fs::write(
            &mark,
            format!("the shadow directory of upgrade {upgrade}\n"),
        )
        .map_err(io("marking the shadow directory", &mark))?;
    }
    Ok(())
}

/// Removes the shadow directory and all that v2 wrote in it; one that is gone is removed
/// already. A directory without the upgrade's marker is left alone (after the exchange, the
/// path holds v1's files).
pub fn drop_shadow(shadow: &Path, upgrade: &str) -> Result<(), UpgradeSinkError> {
    if !exists(shadow)? {
        return Ok(());
    }
    let empty = std::fs::read_dir(shadow)
        .map_err(io("listing", shadow))?
        .next()
        .is_none();
    if !empty && !exists(&marker(shadow, upgrade))? {
        return Err(UpgradeSinkError::NotShadow {
            path: shadow.to_path_buf(),
        });
    }
    std::fs::remove_dir_all(shadow).map_err(io("removing the shadow directory", shadow))
}

/// The rows of the committed JSON-lines files of `dir` (hidden in-progress files skipped), by
/// the key `key` renders from each (over the sink's columns `schema`), or by the whole row
/// without a key. A key several rows have maps to the array of them, sorted (duplicates show
/// in a diff). A missing directory has no rows.
pub fn rows(
    dir: &Path,
    key: Option<&KeyTemplate>,
    schema: &Schema,
) -> Result<BTreeMap<String, Value>, UpgradeSinkError> {
    if !exists(dir)? {
        return Ok(BTreeMap::new());
    }
    let files = list_files(dir).map_err(|e| UpgradeSinkError::List(Box::new(e)))?;
    let mut grouped: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for path in files {
        let f = std::fs::File::open(&path).map_err(io("reading", &path))?;
        for (n, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(io("reading", &path))?;
            if line.trim().is_empty() {
                continue;
            }
            let row: Value =
                serde_json::from_str(&line).map_err(|source| UpgradeSinkError::BadLine {
                    path: path.clone(),
                    line: n + 1,
                    source,
                })?;
            let k = match key {
                Some(t) => render(t, schema, &row),
                None => row.to_string(),
            };
            grouped.entry(k).or_default().push(row);
        }
    }
    Ok(grouped
        .into_iter()
        .map(|(k, mut rows)| match rows.len() {
            1 => (k, rows.remove(0)),
            _ => {
                rows.sort_by_key(Value::to_string);
                (k, Value::Array(rows))
            }
        })
        .collect())
}

/// The key template rendered over a JSON row: strings as they are, other values as JSON,
/// a missing or null column as nothing.
fn render(t: &KeyTemplate, schema: &Schema, row: &Value) -> String {
    let mut out = String::new();
    for part in &t.parts {
        match part {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::Column(i) => {
                let name = schema.fields().get(*i).map(|f| f.name().as_str());
                match name.and_then(|n| row.get(n)) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(Value::Null) | None => {}
                    Some(v) => out.push_str(&v.to_string()),
                }
            }
        }
    }
    out
}

/// Where a cut-over of a file sink is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapState {
    /// The live directory holds v1's files.
    Before,
    /// The live directory holds v2's files; the shadow path v1's, not yet renamed.
    Exchanged,
    /// Finished: v1's files are in the backup.
    Done,
}

/// Where the cut-over of `live` to `shadow` (v1's files kept in `backup`) is.
pub fn swap_state(
    live: &Path,
    shadow: &Path,
    backup: &Path,
    upgrade: &str,
) -> Result<SwapState, UpgradeSinkError> {
    if exists(&marker(live, upgrade))? {
        return Ok(SwapState::Exchanged);
    }
    if exists(shadow)? {
        return Ok(SwapState::Before);
    }
    match exists(backup)? {
        true => Ok(SwapState::Done),
        false => Err(UpgradeSinkError::NoShadowDir {
            live: live.to_path_buf(),
            shadow: shadow.to_path_buf(),
        }),
    }
}

/// Writes `rows` (v1's rows v2 does not have, which a replay of an incomplete history could
/// not recompute) into v2's shadow directory before the exchange, so that they stay.
/// Writing them again replaces them.
pub fn keep_rows(shadow: &Path, upgrade: &str, rows: &[Value]) -> Result<(), UpgradeSinkError> {
    let path = kept_file(shadow, upgrade);
    let hidden = shadow.join(format!(".kappa-upgrade-{upgrade}-v1-kept.inprogress"));
    let mut f = std::fs::File::create(&hidden).map_err(io("writing", &hidden))?;
    for r in rows {
        writeln!(f, "{r}").map_err(io("writing", &hidden))?;
    }
    f.sync_all().map_err(io("syncing", &hidden))?;
    std::fs::rename(&hidden, &path).map_err(io("renaming", &hidden))
}

/// Cuts `live` over to `shadow`: one exchange of the two directories, then v1's files (now
/// at the shadow path) renamed to `backup` and the marker removed. Each step is recognised
/// as done when it is tried again; true when this call made the exchange.
pub fn swap(
    live: &Path,
    shadow: &Path,
    backup: &Path,
    upgrade: &str,
) -> Result<bool, UpgradeSinkError> {
    let state = swap_state(live, shadow, backup, upgrade)?;
    if state == SwapState::Done {
        return Ok(false);
    }
    if state == SwapState::Before {
        if exists(backup)? {
            return Err(UpgradeSinkError::BackupDirExists {
                backup: backup.to_path_buf(),
            });
        }
        // v1 has not written yet: an empty live directory to exchange with.
        std::fs::create_dir_all(live).map_err(io("creating", live))?;
        renameat_with(CWD, shadow, CWD, live, RenameFlags::EXCHANGE).map_err(|e| {
            UpgradeSinkError::Io {
                what: format!("exchanging with `{}`", shadow.display()),
                path: live.to_path_buf(),
                source: e.into(),
            }
        })?;
        sync_parent(live)?;
    }
    if exists(shadow)? {
        std::fs::rename(shadow, backup).map_err(io("keeping v1's files in", backup))?;
        sync_parent(backup)?;
    }
    let mark = marker(live, upgrade);
    std::fs::remove_file(&mark).map_err(io("removing", &mark))?;
    Ok(state == SwapState::Before)
}

/// Makes a rename in the directory holding `path` durable.
fn sync_parent(path: &Path) -> Result<(), UpgradeSinkError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", parent))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field};

    use super::*;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new("window_end", DataType::Int64, false),
            Field::new("n", DataType::Int64, false),
        ]))
    }

    fn write(dir: &Path, name: &str, lines: &[&str]) {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join(name), lines.join("\n") + "\n").expect("write");
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn rows_are_keyed_by_the_template_and_duplicates_show() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = schema();
        let key = KeyTemplate::parse("{item_id}-{window_end}", &s).expect("key");
        write(
            dir.path(),
            "part-a-1.jsonl",
            &[
                r#"{"item_id":"i1","window_end":10,"n":3}"#,
                r#"{"item_id":"i2","window_end":10,"n":4}"#,
            ],
        );
        write(
            dir.path(),
            "part-b-1.jsonl",
            &[r#"{"item_id":"i2","window_end":10,"n":4}"#],
        );
        write(dir.path(), ".part-c.a1.inprogress", &["not json"]);
        let rows = rows(dir.path(), Some(&key), &s).expect("rows");
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows["i1-10"]["n"], 3);
        assert!(rows["i2-10"].is_array(), "a duplicate: {rows:?}");
        let whole = super::rows(dir.path(), None, &s).expect("rows");
        assert!(whole.contains_key(r#"{"item_id":"i1","n":3,"window_end":10}"#));

        write(dir.path(), "part-d-1.jsonl", &["{}", "{\"item_id\":"]);
        let e = super::rows(dir.path(), Some(&key), &s).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("part-d-1.jsonl") && text.contains("line 2"),
            "{text}"
        );
        assert!(!e.retryable());
    }

    /// A live directory with v1's file and the shadow of upgrade `u1` beside it (the
    /// directory holding them first).
    fn v1_and_a_shadow() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("tmp");
        let (live, shadow, backup) = (
            tmp.path().join("out"),
            tmp.path().join("out.u1"),
            tmp.path().join("out.u1_v1"),
        );
        write(&live, "part-v1-1.jsonl", &["{\"v\":1}"]);
        create_shadow(&shadow, "u1").expect("shadow");
        (tmp, live, shadow, backup)
    }

    #[test]
    fn the_swap_exchanges_the_directories_once_and_keeps_v1_in_the_backup() {
        let (_tmp, live, shadow, backup) = v1_and_a_shadow();
        create_shadow(&shadow, "u1").expect("again");
        write(&shadow, "part-v2-1.jsonl", &["{\"v\":2}"]);
        keep_rows(&shadow, "u1", &[serde_json::json!({"v": 0})]).expect("kept");
        assert_eq!(
            swap_state(&live, &shadow, &backup, "u1").expect("state"),
            SwapState::Before
        );
        assert!(swap(&live, &shadow, &backup, "u1").expect("swap"));
        assert_eq!(
            names(&live),
            ["part-kappa-upgrade-u1-v1-kept.jsonl", "part-v2-1.jsonl"]
        );
        assert_eq!(names(&backup), ["part-v1-1.jsonl"]);
        assert!(!shadow.exists());
        // Again (a jobmanager that did not record the outcome): nothing changes.
        assert!(!swap(&live, &shadow, &backup, "u1").expect("again"));
        assert_eq!(names(&backup), ["part-v1-1.jsonl"]);
        assert_eq!(
            swap_state(&live, &shadow, &backup, "u1").expect("state"),
            SwapState::Done
        );
        // Dropping the shadow afterwards finds nothing to drop.
        drop_shadow(&shadow, "u1").expect("gone");
        assert!(backup.exists());
    }

    #[test]
    fn a_swap_interrupted_after_the_exchange_finishes_without_exchanging_back() {
        let (_tmp, live, shadow, backup) = v1_and_a_shadow();
        write(&shadow, "part-v2-1.jsonl", &["{\"v\":2}"]);
        renameat_with(CWD, &shadow, CWD, &live, RenameFlags::EXCHANGE).expect("exchange");
        assert_eq!(
            swap_state(&live, &shadow, &backup, "u1").expect("state"),
            SwapState::Exchanged
        );
        assert!(!swap(&live, &shadow, &backup, "u1").expect("finishes"));
        assert_eq!(names(&live), ["part-v2-1.jsonl"]);
        assert_eq!(names(&backup), ["part-v1-1.jsonl"]);
    }

    #[test]
    fn only_the_upgrades_own_shadow_directory_is_removed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let other = tmp.path().join("data.u1");
        write(&other, "precious.jsonl", &["{}"]);
        let e = drop_shadow(&other, "u1").unwrap_err();
        assert!(e.to_string().contains("data.u1"), "{e}");
        assert!(create_shadow(&other, "u1").is_err(), "not taken over");
        assert!(other.join("precious.jsonl").exists());
        let ours = tmp.path().join("out.u1");
        create_shadow(&ours, "u1").expect("shadow");
        write(&ours, "part-v2-1.jsonl", &["{}"]);
        drop_shadow(&ours, "u1").expect("drop");
        assert!(!ours.exists());
    }
}
