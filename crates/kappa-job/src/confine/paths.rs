//! The `--allow-path` roots: directories (resolved once, at start) under which file connectors
//! read and write and savepoints go, and S3 prefixes (`s3://bucket/prefix`) for savepoints. A
//! path is resolved as the system would open it — `..` and symlinks, and for a path not created
//! yet its deepest existing ancestor — before it is compared, so a symlink inside a root that
//! leads out of it is refused.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Where the jobs of one process may read and write files and keep savepoints.
#[derive(Debug, Clone)]
pub struct AllowedPaths {
    /// The process, for messages naming its flag: `jobmanager`, `taskmanager`, `kappa local`.
    process: &'static str,
    /// None: any path (`kappa local` without roots, a single user's own process).
    roots: Option<Vec<Place>>,
}

/// A directory (resolved) or an S3 bucket and key prefix (by segment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    Dir(PathBuf),
    S3 { bucket: String, prefix: Vec<String> },
}

impl Place {
    /// Whether `other` lies inside this place (or is it).
    fn contains(&self, other: &Place) -> bool {
        match (self, other) {
            (Self::Dir(root), Self::Dir(p)) => p.starts_with(root),
            (
                Self::S3 { bucket, prefix },
                Self::S3 {
                    bucket: b,
                    prefix: p,
                },
            ) => bucket == b && p.starts_with(prefix),
            _ => false,
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(p) => write!(f, "{}", p.display()),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{}", prefix.join("/")),
        }
    }
}

/// Why a root given at start cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("--allow-path `{root}` cannot be resolved (it must be an existing directory)")]
    Resolve {
        root: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--allow-path `{root}` is not a directory")]
    NotDir { root: String },
    #[error("--allow-path `{root}`: {why}")]
    Invalid { root: String, why: String },
}

/// Why a job may not use a path or location on this process.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PathRefused {
    #[error(
        "`{path}`: this {process} lets jobs use no files; start it with --allow-path DIR (KAPPA_ALLOW_PATHS) to let them read and write under DIR"
    )]
    NoRoots { path: String, process: &'static str },
    #[error("`{path}`{} is outside the directories this {process} allows jobs to use: {roots} (--allow-path)", resolved_note(.path, .resolved))]
    Outside {
        path: String,
        resolved: String,
        roots: String,
        process: &'static str,
    },
    #[error(
        "`{location}`{} is neither under the checkpoint directory{} nor under a root this {process} allows ({roots}; --allow-path)",
        resolved_note(.location, .resolved),
        .checkpoint_root.as_ref().map(|r| format!(" `{r}`")).unwrap_or_default()
    )]
    LocationOutside {
        location: String,
        resolved: String,
        checkpoint_root: Option<String>,
        roots: String,
        process: &'static str,
    },
    #[error("`{path}` cannot be resolved")]
    Unresolvable {
        path: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("`{path}`: {why}")]
    Invalid { path: String, why: String },
}

fn resolved_note(given: &str, resolved: &str) -> String {
    match given == resolved {
        true => String::new(),
        false => format!(" (resolved: `{resolved}`)"),
    }
}

impl AllowedPaths {
    /// Any path: `kappa local` without roots.
    pub fn any(process: &'static str) -> Self {
        Self {
            process,
            roots: None,
        }
    }

    /// No path at all: a cluster process started without roots.
    pub fn none(process: &'static str) -> Self {
        Self {
            process,
            roots: Some(Vec::new()),
        }
    }

    /// Only under `roots` (directories, which must exist, or `s3://bucket/prefix` for
    /// savepoints); none: no file access at all.
    pub fn under(process: &'static str, roots: &[String]) -> Result<Self, RootError> {
        let mut places = Vec::with_capacity(roots.len());
        for root in roots.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
            let invalid = |why: String| RootError::Invalid {
                root: root.to_string(),
                why,
            };
            let place = match parse(root).map_err(invalid)? {
                Place::Dir(dir) => {
                    let real =
                        std::fs::canonicalize(&dir).map_err(|source| RootError::Resolve {
                            root: root.to_string(),
                            source,
                        })?;
                    if !real.is_dir() {
                        return Err(RootError::NotDir {
                            root: root.to_string(),
                        });
                    }
                    Place::Dir(real)
                }
                s3 => s3,
            };
            places.push(place);
        }
        Ok(Self {
            process,
            roots: Some(places),
        })
    }

    /// Whether any path is allowed (no roots were given to `kappa local`).
    pub fn is_any(&self) -> bool {
        self.roots.is_none()
    }

    /// The roots, for messages and logs (`any path` without them).
    pub fn describe(&self) -> String {
        match &self.roots {
            None => "any path".into(),
            Some(r) if r.is_empty() => "none".into(),
            Some(r) => r
                .iter()
                .map(Place::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// `path` (a file or directory of a file connector), resolved, when this process lets
    /// jobs use it; unchanged when any path is allowed.
    pub fn check_path(&self, path: &Path) -> Result<PathBuf, PathRefused> {
        let Some(roots) = &self.roots else {
            return Ok(path.to_path_buf());
        };
        let shown = path.display().to_string();
        if roots.is_empty() {
            return Err(PathRefused::NoRoots {
                path: shown,
                process: self.process,
            });
        }
        let resolved = resolve(path).map_err(|e| e.at(&shown))?;
        if roots
            .iter()
            .any(|r| r.contains(&Place::Dir(resolved.clone())))
        {
            return Ok(resolved);
        }
        Err(PathRefused::Outside {
            path: shown,
            resolved: resolved.display().to_string(),
            roots: self.describe(),
            process: self.process,
        })
    }

    /// Whether a sink may write to `location` (a directory, `file://` or `s3://` URI): a
    /// directory as [`AllowedPaths::check_path`] has it, an S3 prefix under an S3 root.
    pub fn check_store(&self, location: &str) -> Result<(), PathRefused> {
        let invalid = |why: String| PathRefused::Invalid {
            path: location.to_string(),
            why,
        };
        match parse(location.trim()).map_err(invalid)? {
            Place::Dir(dir) => self.check_path(&dir).map(drop),
            s3 => match self.roots.as_deref() {
                None => Ok(()),
                Some([]) => Err(PathRefused::NoRoots {
                    path: location.to_string(),
                    process: self.process,
                }),
                Some(roots) if roots.iter().any(|r| r.contains(&s3)) => Ok(()),
                Some(_) => Err(PathRefused::Outside {
                    path: location.to_string(),
                    resolved: s3.to_string(),
                    roots: self.describe(),
                    process: self.process,
                }),
            },
        }
    }

    /// Whether a savepoint may be written to or restored from `location` (a directory,
    /// `file://` or `s3://` URI): under the checkpoint root `checkpoint_root`, or under a
    /// root of this process.
    pub fn check_location(
        &self,
        location: &str,
        checkpoint_root: Option<&str>,
    ) -> Result<(), PathRefused> {
        let invalid = |why: String| PathRefused::Invalid {
            path: location.to_string(),
            why,
        };
        let target = parse(location.trim()).map_err(invalid)?;
        if self.roots.is_none() {
            return Ok(());
        }
        let target = match target {
            Place::Dir(dir) => Place::Dir(resolve(&dir).map_err(|e| e.at(location))?),
            s3 => s3,
        };
        // The checkpoint root was accepted at start; one that does not parse holds nothing.
        let under_root = checkpoint_root
            .and_then(|r| match parse(r.trim()).ok()? {
                Place::Dir(dir) => resolve(&dir).ok().map(Place::Dir),
                s3 => Some(s3),
            })
            .is_some_and(|root| root.contains(&target));
        let roots = self.roots.as_deref().unwrap_or_default();
        if under_root || roots.iter().any(|r| r.contains(&target)) {
            return Ok(());
        }
        Err(PathRefused::LocationOutside {
            location: location.to_string(),
            resolved: target.to_string(),
            checkpoint_root: checkpoint_root.map(str::to_string),
            roots: self.describe(),
            process: self.process,
        })
    }
}

/// A path, `file://` URI or `s3://bucket/prefix` URI, as `kappa_state::Location` reads them.
pub(crate) fn parse(text: &str) -> Result<Place, String> {
    let (scheme, rest) = match text.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("file".to_string(), text),
    };
    match scheme.as_str() {
        "file" if rest.is_empty() => Err("an empty path".into()),
        "file" => Ok(Place::Dir(PathBuf::from(rest))),
        "s3" | "s3a" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("no bucket: write s3://bucket/prefix".into());
            }
            let prefix: Vec<String> = prefix
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if prefix.iter().any(|s| s == "." || s == "..") {
                return Err("`.` and `..` are not segments of an S3 location".into());
            }
            Ok(Place::S3 {
                bucket: bucket.to_string(),
                prefix,
            })
        }
        other => Err(format!(
            "unsupported scheme `{other}`: use a path, file:// or s3://"
        )),
    }
}

/// `path` as the system resolves it: `..` and symlinks followed, and for a path not created
/// yet its deepest existing ancestor with the names below it.
pub fn resolved(path: &Path) -> Result<PathBuf, PathRefused> {
    resolve(path).map_err(|e| e.at(&path.display().to_string()))
}

/// Why a path could not be resolved.
enum Unresolved {
    /// `..` after a name that does not exist yet.
    Dangling,
    Io(std::io::Error),
}

impl Unresolved {
    fn at(self, path: &str) -> PathRefused {
        match self {
            Self::Dangling => PathRefused::Invalid {
                path: path.to_string(),
                why: "`..` follows a directory that does not exist".into(),
            },
            Self::Io(e) => PathRefused::Unresolvable {
                path: path.to_string(),
                source: Arc::new(e),
            },
        }
    }
}

/// `path` as the system resolves it: its deepest existing ancestor canonicalised (`..` and
/// symlinks followed), then the names below it that do not exist yet. An entry that exists
/// but does not resolve (a symlink to nowhere) is refused: creating through it could land
/// anywhere.
fn resolve(path: &Path) -> Result<PathBuf, Unresolved> {
    let absolute = std::path::absolute(path).map_err(Unresolved::Io)?;
    let parts: Vec<Component<'_>> = absolute.components().collect();
    for n in (1..=parts.len()).rev() {
        let head: PathBuf = parts[..n].iter().collect();
        match std::fs::canonicalize(&head) {
            Ok(mut real) => {
                for c in &parts[n..] {
                    match c {
                        Component::Normal(name) => real.push(name),
                        Component::CurDir => {}
                        _ => return Err(Unresolved::Dangling),
                    }
                }
                return Ok(real);
            }
            Err(e) if std::fs::symlink_metadata(&head).is_ok() => return Err(Unresolved::Io(e)),
            Err(_) => {}
        }
    }
    Err(Unresolved::Io(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no ancestor of it exists",
    )))
}
