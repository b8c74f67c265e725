//! Where checkpoints are stored: `--checkpoint-dir` as a local path, a `file://` URI or an
//! `s3://bucket/prefix` URI (credentials and endpoint from the AWS_* environment, never logged).

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;

use crate::error::StateError;

/// An object store and the prefix under which Kappa writes.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub root: ObjectPath,
    /// The location as the user gave it, for messages.
    pub text: String,
    /// What object paths are relative to, for showing them: a directory or `s3://bucket`.
    base: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Location({})", self.text)
    }
}

impl Location {
    /// Parses a path or URI; a local directory is created if missing.
    pub fn parse(text: &str) -> Result<Self, StateError> {
        let bad = |m: String| StateError::Location(text.to_string(), m);
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("file".to_string(), text),
        };
        match scheme.as_str() {
            "file" => {
                let dir = std::path::Path::new(rest);
                std::fs::create_dir_all(dir)
                    .map_err(|e| bad(format!("cannot create the directory: {e}")))?;
                let dir = dir.canonicalize().map_err(|e| bad(e.to_string()))?;
                let store =
                    LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(e.to_string()))?;
                Ok(Self {
                    store: Arc::new(store),
                    root: ObjectPath::default(),
                    text: text.to_string(),
                    base: dir.display().to_string(),
                })
            }
            "s3" | "s3a" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("no bucket: write s3://bucket/prefix".into()));
                }
                let store = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| bad(format!("{e} (set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, and AWS_ENDPOINT_URL with AWS_ALLOW_HTTP=true for an S3-compatible server)")))?;
                let root =
                    ObjectPath::parse(prefix.trim_matches('/')).map_err(|e| bad(e.to_string()))?;
                Ok(Self {
                    store: Arc::new(store),
                    root,
                    text: text.to_string(),
                    base: format!("{scheme}://{bucket}"),
                })
            }
            other => Err(bad(format!(
                "unsupported scheme `{other}`: use a path, file:// or s3://"
            ))),
        }
    }

    /// Where an object is, as a user would write it (`/dir/obj` or `s3://bucket/obj`).
    pub fn show(&self, path: &ObjectPath) -> String {
        format!("{}/{path}", self.base.trim_end_matches('/'))
    }

    /// `root/part/part/…`.
    pub fn child(&self, parts: &[&str]) -> ObjectPath {
        parts
            .iter()
            .fold(self.root.clone(), |p, part| p.join(*part))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_uris_parse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("chk");
        let l = Location::parse(&p.display().to_string()).unwrap();
        assert!(p.is_dir());
        assert_eq!(l.child(&["job", "chk-1"]).to_string(), "job/chk-1");
        let l = Location::parse(&format!("file://{}", p.display())).unwrap();
        assert_eq!(l.root.to_string(), "");
        assert!(
            Location::parse("hdfs://nn/x")
                .unwrap_err()
                .to_string()
                .contains("unsupported scheme")
        );
        assert!(
            Location::parse("s3:///x")
                .unwrap_err()
                .to_string()
                .contains("no bucket")
        );
    }
}
