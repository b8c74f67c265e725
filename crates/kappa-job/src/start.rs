//! Where a job starts reading its source: `earliest`, `latest` or `timestamp:<epoch-ms>`.
//! Given in job.toml (`source.start`) and overridden by `kappactl submit --start`.

use std::fmt;
use std::str::FromStr;

/// The position a source starts at on every partition it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// The first offset still in the log: replays all history.
    #[default]
    Earliest,
    /// Only records produced after the job starts.
    Latest,
    /// The first record whose timestamp is at or after this many milliseconds since the epoch.
    Timestamp(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid start position `{0}`: expected earliest, latest, timestamp:<epoch-ms>, savepoint:<directory or URI> or checkpoint:<job id>:<checkpoint id>"
)]
pub struct StartPositionError(pub String);

impl FromStr for StartPosition {
    type Err = StartPositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match t {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            _ => t
                .strip_prefix("timestamp:")
                .and_then(|ms| ms.trim().parse::<i64>().ok())
                .filter(|ms| *ms >= 0)
                .map(Self::Timestamp)
                .ok_or_else(|| StartPositionError(s.to_string())),
        }
    }
}

impl fmt::Display for StartPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Earliest => f.write_str("earliest"),
            Self::Latest => f.write_str("latest"),
            Self::Timestamp(ms) => write!(f, "timestamp:{ms}"),
        }
    }
}

/// Where a submitted job starts: a position in its Kafka topic, or a savepoint whose offsets
/// and state it resumes from (`savepoint:<directory or URI>`), or a retained checkpoint of a
/// job of the cluster (`checkpoint:<job id>:<checkpoint id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Position(StartPosition),
    Savepoint(String),
    Checkpoint { job: String, id: u64 },
}

impl FromStr for Start {
    type Err = StartPositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || StartPositionError(s.to_string());
        if let Some(uri) = t.strip_prefix("savepoint:") {
            return match uri.trim() {
                "" => Err(bad()),
                uri => Ok(Self::Savepoint(uri.to_string())),
            };
        }
        if let Some(rest) = t.strip_prefix("checkpoint:") {
            let (job, id) = rest.rsplit_once(':').ok_or_else(bad)?;
            let id = id.parse().map_err(|_| bad())?;
            return match job.trim() {
                "" => Err(bad()),
                job => Ok(Self::Checkpoint {
                    job: job.to_string(),
                    id,
                }),
            };
        }
        t.parse().map(Self::Position)
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Position(p) => p.fmt(f),
            Self::Savepoint(uri) => write!(f, "savepoint:{uri}"),
            Self::Checkpoint { job, id } => write!(f, "checkpoint:{job}:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for s in ["earliest", "latest", "timestamp:1732500000123"] {
            assert_eq!(s.parse::<StartPosition>().unwrap().to_string(), s);
        }
        assert!("timestamp:abc".parse::<StartPosition>().is_err());
        assert!("timestamp:-5".parse::<StartPosition>().is_err());
        assert!("first".parse::<StartPosition>().is_err());
        assert_eq!(
            "savepoint:s3://b/sp-1".parse::<Start>().unwrap(),
            Start::Savepoint("s3://b/sp-1".into())
        );
        assert_eq!(
            "latest".parse::<Start>().unwrap(),
            Start::Position(StartPosition::Latest)
        );
        assert!("savepoint:".parse::<Start>().is_err());
        let c = "checkpoint:3f2a:17".parse::<Start>().unwrap();
        assert_eq!(
            c,
            Start::Checkpoint {
                job: "3f2a".into(),
                id: 17
            }
        );
        assert_eq!(c.to_string(), "checkpoint:3f2a:17");
        for bad in [
            "checkpoint:",
            "checkpoint:abc",
            "checkpoint::3",
            "checkpoint:a:b",
        ] {
            assert!(bad.parse::<Start>().is_err(), "{bad}");
        }
    }
}
