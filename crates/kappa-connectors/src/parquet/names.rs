//! The object names of the parquet sink, relative to its location, for writer `w` (job, sink
//! and subtask) in attempt `a` of the job:
//!
//! - `_staging/part-w.aA-S.pending`: the S-th file the attempt closed, exactly-once, until
//!   its checkpoint completes (readers skip `_` directories, and the name is no `*.parquet`);
//! - `DIR/part-w-N-I.parquet`: the I-th file of checkpoint N, committed (`DIR` is the row's
//!   partition directory, empty without `partition_by`); `DIR/part-w-aA-end-I.parquet`: what
//!   a bounded input wrote after its last checkpoint;
//! - `DIR/part-w-aA-S.parquet`: at-least-once, written there directly.
//!
//! Checkpoint ids are never reused, across attempts too, so committed names never collide.
//! The names a restored checkpoint lists are read back from storage: only names of this
//! scheme are taken ([`restored`]).

use kappa_job::confine::{PathRefused, Refused, names};
use object_store::path::{Path as ObjectPath, PathPart};

/// The directory of staged files, under the sink's location.
pub(super) const STAGING: &str = "_staging";

/// The most directory levels a restored committed name may have.
const MAX_LEVELS: usize = 64;

/// The names of one writer in one attempt.
#[derive(Debug, Clone)]
pub(super) struct Naming {
    pub writer: String,
    pub attempt: u32,
}

impl Naming {
    /// Where the `seq`-th file of this attempt is staged.
    pub fn staged(&self, seq: u64) -> ObjectPath {
        let (w, a) = (&self.writer, self.attempt);
        ObjectPath::from(STAGING).join(format!("part-{w}.a{a}-{seq}.pending"))
    }

    /// The at-least-once name of the `seq`-th file of this attempt, in `dir`.
    pub fn direct(&self, dir: &ObjectPath, seq: u64) -> ObjectPath {
        let (w, a) = (&self.writer, self.attempt);
        dir.clone().join(format!("part-{w}-a{a}-{seq}.parquet"))
    }

    /// The committed name of the `i`-th file of checkpoint `n` (None: the end of the input).
    pub fn committed(&self, dir: &ObjectPath, n: Option<u64>, i: usize) -> ObjectPath {
        let (w, a) = (&self.writer, self.attempt);
        let name = match n {
            Some(n) => format!("part-{w}-{n}-{i}.parquet"),
            None => format!("part-{w}-a{a}-end-{i}.parquet"),
        };
        dir.clone().join(name)
    }

    /// The attempt a staged file of this writer belongs to (None: not this writer's).
    pub fn attempt_of(&self, name: &str) -> Option<u32> {
        let rest = name.strip_prefix(&format!("part-{}.a", self.writer))?;
        let (attempt, seq) = rest.strip_suffix(".pending")?.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match digits(attempt) && digits(seq) {
            true => attempt.parse().ok(),
            false => None,
        }
    }
}

/// A staged and a committed name a restored checkpoint lists, taken only if they are names
/// of this sink's scheme: a staged file in `_staging`, a committed `part-…parquet` in visible
/// directories under the location (never `..`, `_staging` or another hidden one).
pub(super) fn restored(staged: &str, committed: &str) -> Result<(ObjectPath, ObjectPath), Refused> {
    let refused = |path: &str, why: &str| {
        Refused::Path(PathRefused::Invalid {
            path: path.to_string(),
            why: format!(
                "the restored checkpoint names a parquet file that is not one of this sink's: {why}"
            ),
        })
    };
    let staged_path = ObjectPath::parse(staged).map_err(|e| refused(staged, &e.to_string()))?;
    let parts: Vec<PathPart<'_>> = staged_path.parts().collect();
    let [dir, name] = parts.as_slice() else {
        return Err(refused(staged, "not a staged file"));
    };
    names::plain_file_name(name.as_ref())?;
    let own = dir.as_ref() == STAGING
        && name.as_ref().starts_with("part-")
        && name.as_ref().ends_with(".pending");
    if !own {
        return Err(refused(staged, "not a staged file"));
    }
    let committed_path =
        ObjectPath::parse(committed).map_err(|e| refused(committed, &e.to_string()))?;
    let parts: Vec<PathPart<'_>> = committed_path.parts().collect();
    if parts.is_empty() || parts.len() > MAX_LEVELS {
        return Err(refused(committed, "no file name, or too many levels"));
    }
    for p in &parts {
        names::plain_file_name(p.as_ref())?;
        if p.as_ref().starts_with(['.', '_']) {
            return Err(refused(committed, "a hidden directory"));
        }
    }
    let file = parts[parts.len() - 1].as_ref();
    if !(file.starts_with("part-") && file.ends_with(".parquet")) {
        return Err(refused(committed, "not a part file"));
    }
    Ok((staged_path, committed_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming {
            writer: "j1-sinks.lake-0".into(),
            attempt: 3,
        }
    }

    #[test]
    fn staged_names_belong_to_their_writer_and_attempt() {
        let n = naming();
        let staged = n.staged(7);
        assert_eq!(
            staged.to_string(),
            "_staging/part-j1-sinks.lake-0.a3-7.pending"
        );
        let name = staged.filename().expect("a name");
        assert_eq!(n.attempt_of(name), Some(3));
        let other = Naming {
            writer: "j1-sinks.lake-1".into(),
            attempt: 3,
        };
        assert_eq!(other.attempt_of(name), None);
        for foreign in [
            "part-j1-sinks.lake-0.a3-7.parquet",
            "part-j1-sinks.lake-0.a3-.pending",
            "part-j1-sinks.lake-0.ax-1.pending",
            "part-j1-sinks.lake-0.a3-1-2.pending",
        ] {
            assert_eq!(n.attempt_of(foreign), None, "{foreign}");
        }
        let dir = ObjectPath::from("dt=2024-11-25");
        assert_eq!(
            n.committed(&dir, Some(12), 0).to_string(),
            "dt=2024-11-25/part-j1-sinks.lake-0-12-0.parquet"
        );
        assert_eq!(
            n.committed(&ObjectPath::default(), None, 1).to_string(),
            "part-j1-sinks.lake-0-a3-end-1.parquet"
        );
    }

    #[test]
    fn restored_names_of_other_schemes_are_refused() {
        let staged = "_staging/part-w-0.a1-0.pending";
        let ok = restored(staged, "dt=2024-11-25/part-w-0-4-0.parquet").expect("own");
        assert_eq!(ok.1.to_string(), "dt=2024-11-25/part-w-0-4-0.parquet");
        restored(staged, "part-w-0-4-0.parquet").expect("own, unpartitioned");
        for (s, c) in [
            (staged, "../other/part-w-0-4-0.parquet"),
            (staged, "dt=1/../../part-w-0-4-0.parquet"),
            (staged, "_staging/part-w-0-4-0.parquet"),
            (staged, ".hidden/part-w-0-4-0.parquet"),
            (staged, "dt=1/checkpoint-metadata"),
            (staged, ""),
            (
                "_staging/../x/part-w-0.a1-0.pending",
                "part-w-0-4-0.parquet",
            ),
            ("other/part-w-0.a1-0.pending", "part-w-0-4-0.parquet"),
            ("_staging/victim.parquet", "part-w-0-4-0.parquet"),
            ("part-w-0.a1-0.pending", "part-w-0-4-0.parquet"),
        ] {
            let e = restored(s, c).unwrap_err();
            assert!(
                e.to_string().contains("not one of this sink's")
                    || e.to_string().contains("not a plain file name"),
                "{s} → {c}: {e}"
            );
        }
    }
}
