//! The sink side of an upgrade, one shadow at a time: create it, read its rows and the live
//! ones for the diff, make the live sink hold the shadow's content at one instant, drop it.
//! PostgreSQL tables, Kafka topics and file directories through
//! [`kappa_connectors::upgrade`], each call on a blocking thread. The connection is v1's (a
//! plan refuses a v2 that connects elsewhere); a file sink's directories are the
//! jobmanager's own view of them (a plan refuses directories it does not see).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kappa_connectors::confine::Confinement;
use kappa_connectors::upgrade::files::SwapState;
use kappa_connectors::upgrade::kafka::{Correction, Latest};
use kappa_connectors::upgrade::{UpgradeSinkError, files, kafka, postgres};
use kappa_job::kafka::KafkaConnection;
use kappa_job::plan::{SinkKind, SinkPlan};
use kappa_job::secret::Secret;
use kappa_runtime::error::with_causes;
use serde_json::Value;

use super::plan::ShadowSink;
use super::protocol::StepError;

/// A shadow and how to reach its server.
pub enum SinkOps {
    Postgres {
        shadow: ShadowSink,
        url: String,
        password: Option<Secret>,
    },
    Kafka {
        shadow: ShadowSink,
        connection: KafkaConnection,
        timeout: Duration,
        /// The exactly-once writers of the shadow job's sink: what they committed to the
        /// shadow is marked committed on the live topic too, so v2 restored from its savepoint
        /// does not write it again.
        writers: Vec<String>,
    },
    File {
        shadow: ShadowSink,
        /// The upgrade's id, which marks the shadow directory as its own.
        upgrade: String,
        /// v1's sink: its key names a row (without one, a row is its whole content).
        v1: Box<SinkPlan>,
    },
}

/// Why a sink operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SinkOpsError {
    #[error("sink `{sink}`: {source}")]
    Sink {
        sink: String,
        #[source]
        source: Box<UpgradeSinkError>,
    },
    #[error("sink `{0}` is not in v1 any more")]
    Missing(String),
    #[error("sink `{0}` writes neither PostgreSQL, Kafka nor files: it cannot be cut over")]
    Unsupported(String),
    #[error("sink `{sink}`: a secret cannot be read here")]
    Secret {
        sink: String,
        #[source]
        source: Box<kappa_job::secret::SecretError>,
    },
    /// The blocking call stopped (the runtime is shutting down).
    #[error("a sink operation stopped")]
    Stopped(#[from] tokio::task::JoinError),
}

impl SinkOpsError {
    pub fn retryable(&self) -> bool {
        match self {
            Self::Sink { source, .. } => source.retryable(),
            Self::Stopped(_) => true,
            Self::Missing(_) | Self::Unsupported(_) | Self::Secret { .. } => false,
        }
    }
}

impl From<SinkOpsError> for StepError {
    fn from(e: SinkOpsError) -> Self {
        Self {
            retryable: e.retryable(),
            message: with_causes(&e),
        }
    }
}

/// What a swap did to one live sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swapped {
    pub sink: String,
    /// Rows or records written to the live sink (changed or new).
    pub written: u64,
    /// Rows deleted or tombstones written (only v1 had them).
    pub removed: u64,
}

impl SinkOps {
    /// The operations of every shadow of upgrade `upgrade`, with v1's connections and
    /// secrets resolved here; `writers` gives the shadow job's writer ids of a sink, by name.
    pub fn all(
        upgrade: &str,
        shadows: &[ShadowSink],
        v1_sinks: &[SinkPlan],
        writers: &dyn Fn(&str) -> Vec<String>,
        confinement: &Confinement,
        timeout: Duration,
    ) -> Result<Vec<Self>, SinkOpsError> {
        shadows
            .iter()
            .map(|s| {
                let sink = v1_sinks
                    .iter()
                    .find(|p| p.name == s.sink)
                    .ok_or_else(|| SinkOpsError::Missing(s.sink.clone()))?;
                match &sink.kind {
                    SinkKind::Postgres { url, .. } => Ok(Self::Postgres {
                        shadow: s.clone(),
                        url: url.clone(),
                        password: postgres_password(sink, confinement)?,
                    }),
                    SinkKind::Kafka { .. } => Ok(Self::Kafka {
                        shadow: s.clone(),
                        connection: kafka_connection(sink, confinement)?,
                        timeout,
                        writers: writers(&s.sink),
                    }),
                    SinkKind::File { .. } => Ok(Self::File {
                        shadow: s.clone(),
                        upgrade: upgrade.to_string(),
                        v1: Box::new(sink.clone()),
                    }),
                    _ => Err(SinkOpsError::Unsupported(s.sink.clone())),
                }
            })
            .collect()
    }

    pub fn shadow(&self) -> &ShadowSink {
        match self {
            Self::Postgres { shadow, .. }
            | Self::Kafka { shadow, .. }
            | Self::File { shadow, .. } => shadow,
        }
    }

    fn failed(&self, source: UpgradeSinkError) -> SinkOpsError {
        SinkOpsError::Sink {
            sink: self.shadow().sink.clone(),
            source: Box::new(source),
        }
    }

    /// Creates the shadow (like the live table; the live topic's partitions).
    pub fn create(&self) -> Result<(), SinkOpsError> {
        let s = self.shadow();
        match self {
            Self::Postgres { url, password, .. } => {
                postgres::create_shadow(url, password.as_ref(), &s.live, &s.shadow)
            }
            Self::Kafka {
                connection,
                timeout,
                ..
            } => kafka::create_shadow_topic(connection, &s.live, &s.shadow, *timeout),
            Self::File { upgrade, .. } => files::create_shadow(Path::new(&s.shadow), upgrade),
        }
        .map_err(|e| self.failed(e))
    }

    /// Drops the shadow (a missing one is dropped already).
    pub fn drop_shadow(&self) -> Result<(), SinkOpsError> {
        let s = self.shadow();
        match self {
            Self::Postgres { url, password, .. } => {
                postgres::drop_table(url, password.as_ref(), &s.shadow)
            }
            Self::Kafka {
                connection,
                timeout,
                ..
            } => kafka::delete_topic(connection, &s.shadow, *timeout),
            Self::File { upgrade, .. } => files::drop_shadow(Path::new(&s.shadow), upgrade),
        }
        .map_err(|e| self.failed(e))
    }

    /// The live rows and the shadow's, by row key.
    pub fn rows(&self) -> Result<[BTreeMap<String, Value>; 2], SinkOpsError> {
        let s = self.shadow();
        let read = |table: &str| match self {
            Self::Postgres { url, password, .. } => postgres::rows(url, password.as_ref(), table),
            Self::Kafka {
                connection,
                timeout,
                ..
            } => kafka::latest_per_key(connection, table, *timeout).map(|records| {
                records
                    .into_iter()
                    .map(|(k, l)| {
                        let key = String::from_utf8_lossy(&k).into_owned();
                        (key, json_value(&l.value))
                    })
                    .collect()
            }),
            Self::File { v1, .. } => files::rows(Path::new(table), v1.key.as_ref(), &v1.schema),
        };
        Ok([
            read(&s.live).map_err(|e| self.failed(e))?,
            read(&s.shadow).map_err(|e| self.failed(e))?,
        ])
    }

    /// Makes the live sink hold the shadow's content, at one instant for its readers: one
    /// PostgreSQL transaction (v1's rows kept in `<table>__<upgrade>_v1`), or one Kafka
    /// transaction of corrections and tombstones. Doing it again changes nothing.
    pub fn swap(&self, upgrade: &str, delete_vanished: bool) -> Result<Swapped, SinkOpsError> {
        let s = self.shadow();
        let (written, removed) = match self {
            Self::Postgres { url, password, .. } => {
                let backup = backup_table(&s.live, upgrade);
                match postgres::swap(
                    url,
                    password.as_ref(),
                    &s.live,
                    &s.shadow,
                    &backup,
                    delete_vanished,
                )
                .map_err(|e| self.failed(e))?
                {
                    postgres::SwapOutcome::Swapped(c) => (c.inserted + c.updated, c.deleted),
                    postgres::SwapOutcome::AlreadySwapped => (0, 0),
                }
            }
            Self::Kafka {
                connection,
                timeout,
                writers,
                ..
            } => {
                let live = kafka::latest_per_key(connection, &s.live, *timeout)
                    .map_err(|e| self.failed(e))?;
                let shadow = kafka::latest_per_key(connection, &s.shadow, *timeout)
                    .map_err(|e| self.failed(e))?;
                let markers = kafka::committed_markers(connection, &s.shadow, writers)
                    .map_err(|e| self.failed(e))?;
                let records = corrections(&live, shadow, delete_vanished);
                let removed = records.iter().filter(|c| c.value.is_none()).count() as u64;
                let written = records.len() as u64 - removed;
                if !records.is_empty() || !markers.is_empty() {
                    let id = format!("kappa-upgrade-{upgrade}-{}", s.sink);
                    kafka::write_corrections(
                        connection, &s.live, &id, &records, &markers, *timeout,
                    )
                    .map_err(|e| self.failed(e))?;
                }
                (written, removed)
            }
            Self::File { .. } => self.swap_files(upgrade, delete_vanished)?,
        };
        Ok(Swapped {
            sink: s.sink.clone(),
            written,
            removed,
        })
    }
}

impl SinkOps {
    /// A file sink's cut-over: the exchange of the two directories, after v1's rows that v2
    /// does not have are copied into the shadow unless `delete_vanished`. Counted before the
    /// exchange (a retry after it counts nothing).
    fn swap_files(&self, upgrade: &str, delete_vanished: bool) -> Result<(u64, u64), SinkOpsError> {
        let s = self.shadow();
        let (live, shadow) = (PathBuf::from(&s.live), PathBuf::from(&s.shadow));
        let backup = PathBuf::from(backup_dir(&s.live, upgrade));
        let state =
            files::swap_state(&live, &shadow, &backup, upgrade).map_err(|e| self.failed(e))?;
        let mut counts = (0, 0);
        if state == SwapState::Before {
            let [v1, v2] = self.rows()?;
            let vanished: Vec<serde_json::Value> = v1
                .iter()
                .filter(|(k, _)| !v2.contains_key(*k))
                .flat_map(|(_, row)| match row {
                    serde_json::Value::Array(rows) => rows.clone(),
                    row => vec![row.clone()],
                })
                .collect();
            let written = v2.iter().filter(|(k, v)| v1.get(*k) != Some(v)).count() as u64;
            counts = match delete_vanished {
                true => (written, vanished.len() as u64),
                false => {
                    files::keep_rows(&shadow, upgrade, &vanished).map_err(|e| self.failed(e))?;
                    (written, 0)
                }
            };
        }
        files::swap(&live, &shadow, &backup, upgrade).map_err(|e| self.failed(e))?;
        Ok(counts)
    }
}

/// The password of a PostgreSQL sink, resolved on this process (None: in the url, or none).
pub(super) fn postgres_password(
    sink: &SinkPlan,
    confinement: &Confinement,
) -> Result<Option<Secret>, SinkOpsError> {
    let SinkKind::Postgres {
        password: Some(p), ..
    } = &sink.kind
    else {
        return Ok(None);
    };
    confinement
        .secrets
        .resolve(p, &format!("{}.password", sink.uid))
        .map(Some)
        .map_err(|source| secret_error(sink, source))
}

/// The connection of a Kafka sink with its secrets resolved on this process.
pub(super) fn kafka_connection(
    sink: &SinkPlan,
    confinement: &Confinement,
) -> Result<KafkaConnection, SinkOpsError> {
    let SinkKind::Kafka { connection, .. } = &sink.kind else {
        return Err(SinkOpsError::Unsupported(sink.name.clone()));
    };
    confinement
        .secrets
        .resolve_kafka(connection, &sink.uid)
        .map_err(|source| secret_error(sink, source))
}

fn secret_error(sink: &SinkPlan, source: kappa_job::secret::SecretError) -> SinkOpsError {
    SinkOpsError::Secret {
        sink: sink.name.clone(),
        source: Box::new(source),
    }
}

/// The directory that keeps v1's files after the cut-over of `live`.
pub fn backup_dir(live: &str, upgrade: &str) -> String {
    format!("{live}.{upgrade}_v1")
}

/// The table that keeps v1's rows after the cut-over of `live` (same schema).
pub fn backup_table(live: &str, upgrade: &str) -> String {
    format!("{live}__{upgrade}_v1")
}

/// The records that make the latest value per key of `live` equal `shadow`'s: changed and
/// new keys with the shadow's value, and (`delete_vanished`) a tombstone per key only `live`
/// has. Each goes to the partition of the key's latest record in `live`, which it
/// supersedes; a new key to its partition in the shadow, where v2 (the same partitioner over
/// as many partitions) writes it.
fn corrections(
    live: &BTreeMap<Vec<u8>, Latest>,
    shadow: BTreeMap<Vec<u8>, Latest>,
    delete_vanished: bool,
) -> Vec<Correction> {
    let vanished: Vec<Correction> = match delete_vanished {
        true => live
            .iter()
            .filter(|(k, _)| !shadow.contains_key(*k))
            .map(|(k, l)| Correction {
                key: k.clone(),
                value: None,
                partition: Some(l.partition),
            })
            .collect(),
        false => Vec::new(),
    };
    shadow
        .into_iter()
        .filter(|(k, v)| live.get(k).map(|l| &l.value) != Some(&v.value))
        .map(|(k, v)| Correction {
            partition: Some(live.get(&k).map_or(v.partition, |l| l.partition)),
            key: k,
            value: Some(v.value),
        })
        .chain(vanished)
        .collect()
}

/// A record value for the diff: its JSON, or the bytes as text.
fn json_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(r: &[(&str, &str, i32)]) -> BTreeMap<Vec<u8>, Latest> {
        r.iter()
            .map(|(k, v, partition)| {
                let value = v.as_bytes().to_vec();
                (
                    k.as_bytes().to_vec(),
                    Latest {
                        partition: *partition,
                        value,
                    },
                )
            })
            .collect()
    }

    fn put(key: &str, value: Option<&str>, partition: i32) -> Correction {
        Correction {
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
            partition: Some(partition),
        }
    }

    #[test]
    fn corrections_write_what_changed_and_tombstone_what_vanished_where_live_has_the_key() {
        let live = map(&[("a", "1", 0), ("b", "2", 1), ("c", "3", 2)]);
        // v2's partitions may differ (a fixed partitioner over other subtasks): a changed key
        // goes where live has it, a new one where v2 wrote it.
        let shadow = map(&[("a", "1", 0), ("b", "5", 0), ("d", "4", 3)]);
        let got = corrections(&live, shadow.clone(), true);
        assert_eq!(
            got,
            vec![
                put("b", Some("5"), 1),
                put("d", Some("4"), 3),
                put("c", None, 2)
            ]
        );
        let kept = corrections(&live, shadow, false);
        assert_eq!(kept.len(), 2, "no tombstone: {kept:?}");
        assert!(corrections(&live, live.clone(), true).is_empty());
    }
}
