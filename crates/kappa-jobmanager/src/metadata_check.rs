//! A `_metadata` read back from storage is not trusted: before anything restores from it, every
//! state file it names must be a plain file name (a taskmanager joins it to its local restore
//! directory), and every object it refers to must lie under the location it was read from (a
//! savepoint's own directory, the checkpoint root).

use kappa_job::confine::BadName;
use kappa_state::Location;
use object_store::path::Path as ObjectPath;

use crate::checkpoint::CheckpointMetadata;

/// What makes a `_metadata` unusable.
#[derive(Debug, thiserror::Error)]
pub enum BadMetadata {
    #[error(
        "the state of `{uid}` subtask {subtask} names a file that would leave its directory: {source}"
    )]
    Name {
        uid: String,
        subtask: u32,
        #[source]
        source: BadName,
    },
    #[error("it refers to the object `{object}`, which is not under `{location}`")]
    Object { object: String, location: String },
}

/// Checks the names and objects of `meta`, read from `location`.
pub fn check(meta: &CheckpointMetadata, location: &Location) -> Result<(), BadMetadata> {
    for o in &meta.operators {
        o.state.check_names().map_err(|source| BadMetadata::Name {
            uid: o.uid.clone(),
            subtask: o.subtask,
            source,
        })?;
    }
    let state = meta
        .operators
        .iter()
        .flat_map(|o| o.state.files.iter().map(|f| f.object.as_str()));
    let sinks = meta.sink_commits.iter().map(|c| c.object.as_str());
    for object in state.chain(sinks) {
        let inside = ObjectPath::parse(object).is_ok_and(|p| p.prefix_matches(&location.root));
        if !inside {
            return Err(BadMetadata::Object {
                object: object.to_string(),
                location: location.text.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, object: &str, sink_object: &str) -> CheckpointMetadata {
        serde_json::from_value(serde_json::json!({
            "version": 2, "job_id": "j", "checkpoint_id": 3, "attempt": 1,
            "completed_at_ms": 0, "parallelism": 1, "max_parallelism": 128,
            "operators": [{"uid": "window", "subtask": 0, "key_groups": [0, 127],
                "state": {"files": [{"name": name, "object": object, "size": 1}]}}],
            "sink_commits": [{"uid": "sink", "subtask": 0, "checkpoint_id": 3,
                "writer": "w", "object": sink_object, "bytes": 1}]
        }))
        .expect("metadata")
    }

    #[test]
    fn names_must_be_plain_and_objects_under_the_location() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = Location::parse(&dir.path().display().to_string()).expect("location");
        assert!(check(&meta("000009.sst", "state-0/000009.sst", "sink/0"), &local).is_ok());
        for bad in ["../../x", "/etc/cron.d/x", "a/b", ""] {
            let e = check(&meta(bad, "state-0/x", "sink/0"), &local).unwrap_err();
            assert!(
                matches!(e, BadMetadata::Name { .. })
                    && e.to_string().contains("`window` subtask 0")
                    && e.to_string().contains("not a plain file name"),
                "{bad:?}: {e}"
            );
        }
        let e = check(&meta("x", "state-0/../../x", "sink/0"), &local).unwrap_err();
        assert!(matches!(e, BadMetadata::Object { .. }), "{e}");
        // In a bucket, a savepoint's objects are under its own prefix.
        let s3 = Location::parse("s3://bucket/savepoints/sp-1").expect("an s3 location");
        let inside = meta("x", "savepoints/sp-1/state-0/x", "savepoints/sp-1/sink/0");
        assert!(check(&inside, &s3).is_ok());
        let e = check(
            &meta("x", "savepoints/sp-1/state-0/x", "other-job/shared/x"),
            &s3,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("other-job/shared/x")
                && e.to_string().contains("s3://bucket/savepoints/sp-1"),
            "{e}"
        );
        assert!(
            check(
                &meta("x", "savepoints/sp-10/state-0/x", "savepoints/sp-1/s"),
                &s3
            )
            .is_err()
        );
    }
}
