//! The redis sink: every row written under its rendered key, pipelined, one round trip per
//! batch. `set` stores the row as JSON (`SET key json [PX ttl]`); `hset` stores its non-null
//! columns as a hash, replaced whole in one `MULTI` (`DEL`, `HSET`, `PEXPIRE`) so a reader
//! never sees a half-written row. A change stream's deleted rows `DEL` their key. Writes are
//! idempotent by key: with checkpoints, a restart
//! replays from the last one and overwrites the same keys (at-least-once delivery,
//! exactly-once results per key).

use std::time::Duration;

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use kappa_job::plan::redact_url;
use kappa_job::plan::redis::RedisSinkPlan;
use kappa_job::secret::Secret;
use kappa_job::spec::RedisCommand;
use kappa_job::template::KeyTemplate;
use kappa_runtime::TaskError;
use kappa_runtime::io::Sink;
use redis::{Connection, IntoConnectionInfo, RedisError};

use crate::json::encode_rows;
use crate::key::render_keys;

/// How long connecting, and each round trip, may take before the task fails (and restarts).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Writes rows to one redis server.
pub struct RedisSink {
    connection: Connection,
    writes: Writes,
    /// The server's url without its password, for messages.
    target: String,
}

/// How rows become commands.
struct Writes {
    key: KeyTemplate,
    command: RedisCommand,
    ttl_ms: Option<u64>,
}

/// A failed redis call as a task error: connectivity is worth a restart, a command the server
/// refused (a key holding another type, a wrong password) is not.
fn failed(what: &str, target: &str, e: &RedisError) -> TaskError {
    let msg = format!("{what} at redis {target}: {e}");
    let retry =
        e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal();
    match retry {
        true => TaskError::Io(msg),
        false => TaskError::Data(msg),
    }
}

impl RedisSink {
    /// Connects to the server of `plan`, with `password` (resolved) when its url has none,
    /// and checks it answers.
    pub fn open(
        plan: &RedisSinkPlan,
        password: Option<&Secret>,
        key: KeyTemplate,
    ) -> Result<Self, TaskError> {
        let target = redact_url(&plan.url);
        let mut info = plan
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| TaskError::Data(format!("the redis url {target}: {e}")))?;
        if let Some(p) = password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(p.value("sink.password")?);
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info)
            .map_err(|e| TaskError::Data(format!("the redis url {target}: {e}")))?;
        let mut connection = client
            .get_connection_with_timeout(TIMEOUT)
            .map_err(|e| failed("connecting", &target, &e))?;
        let timeouts = connection
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| connection.set_write_timeout(Some(TIMEOUT)));
        timeouts.map_err(|e| failed("connecting", &target, &e))?;
        redis::cmd("PING")
            .query::<String>(&mut connection)
            .map_err(|e| failed("connecting", &target, &e))?;
        Ok(Self {
            connection,
            writes: Writes {
                key,
                command: plan.command,
                ttl_ms: plan.ttl.map(|t| t.as_millis().max(1) as u64),
            },
            target,
        })
    }
}

impl Writes {
    /// The pipeline that writes `batch`, deleting the keys of the rows `deletes` marks.
    fn pipeline(
        &self,
        batch: &RecordBatch,
        deletes: Option<&BooleanArray>,
    ) -> Result<redis::Pipeline, TaskError> {
        let keys = render_keys(&self.key, batch).map_err(|e| TaskError::Data(e.to_string()))?;
        let deleted = |row: usize| deletes.is_some_and(|d| d.value(row));
        let mut pipe = redis::pipe();
        match self.command {
            RedisCommand::Set => {
                let rows = encode_rows(batch).map_err(|e| TaskError::Data(e.to_string()))?;
                for (i, (key, row)) in keys.iter().zip(rows).enumerate() {
                    if deleted(i) {
                        pipe.cmd("DEL").arg(key).ignore();
                        continue;
                    }
                    let cmd = pipe.cmd("SET").arg(key).arg(row);
                    if let Some(ms) = self.ttl_ms {
                        cmd.arg("PX").arg(ms);
                    }
                    cmd.ignore();
                }
            }
            RedisCommand::Hset => {
                pipe.atomic();
                let options = FormatOptions::default();
                let columns = batch
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| TaskError::Data(format!("formatting a row for redis: {e}")))?;
                let names = batch.schema();
                for (row, key) in keys.iter().enumerate() {
                    let fields: Vec<(&str, String)> = batch
                        .columns()
                        .iter()
                        .enumerate()
                        .filter(|(_, column)| !column.is_null(row))
                        .map(|(i, _)| {
                            (
                                names.field(i).name().as_str(),
                                columns[i].value(row).to_string(),
                            )
                        })
                        .collect();
                    pipe.cmd("DEL").arg(key).ignore();
                    if fields.is_empty() || deleted(row) {
                        // HSET takes at least one field: a row of nulls is no hash.
                        continue;
                    }
                    let hset = pipe.cmd("HSET").arg(key);
                    for (name, value) in fields {
                        hset.arg(name).arg(value);
                    }
                    hset.ignore();
                    if let Some(ms) = self.ttl_ms {
                        pipe.cmd("PEXPIRE").arg(key).arg(ms).ignore();
                    }
                }
            }
        }
        Ok(pipe)
    }
}

impl RedisSink {
    /// Writes `batch` in one round trip, deleting the keys of the rows `deletes` marks.
    fn send(
        &mut self,
        batch: &RecordBatch,
        deletes: Option<&BooleanArray>,
    ) -> Result<(), TaskError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let pipe = self.writes.pipeline(batch, deletes)?;
        pipe.query::<()>(&mut self.connection).map_err(|e| {
            failed(
                &format!("writing {} rows", batch.num_rows()),
                &self.target,
                &e,
            )
        })
    }
}

impl Sink for RedisSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        self.send(batch, None)
    }

    fn write_changes(
        &mut self,
        batch: &RecordBatch,
        deletes: &BooleanArray,
    ) -> Result<(), TaskError> {
        self.send(batch, Some(deletes))
    }

    /// Every batch is acknowledged by the server when `write` returns.
    fn flush(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("item_id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])),
                Arc::new(Int64Array::from(vec![Some(1), None, None])),
            ],
        )
        .expect("a batch")
    }

    /// The commands of `writes` for the test batch, as RESP text.
    fn packed(command: RedisCommand, ttl_ms: Option<u64>) -> String {
        packed_changes(command, ttl_ms, None)
    }

    /// Like [`packed`], with the rows `deletes` marks deleted.
    fn packed_changes(
        command: RedisCommand,
        ttl_ms: Option<u64>,
        deletes: Option<&BooleanArray>,
    ) -> String {
        let b = batch();
        let key = KeyTemplate::parse("k:{item_id}", &b.schema()).expect("key");
        let writes = Writes {
            key,
            command,
            ttl_ms,
        };
        let pipe = writes.pipeline(&b, deletes).expect("pipeline");
        String::from_utf8(pipe.get_packed_pipeline()).expect("utf-8")
    }

    #[test]
    fn set_writes_each_row_as_json_under_its_key_with_the_ttl() {
        let p = packed(RedisCommand::Set, Some(60_000));
        assert_eq!(p.matches("SET\r\n").count(), 3, "{p}");
        assert!(
            p.contains("k:a\r\n$21\r\n{\"item_id\":\"a\",\"n\":1}\r\n"),
            "{p}"
        );
        // A null column is left out of the JSON.
        assert!(p.contains("k:b\r\n$15\r\n{\"item_id\":\"b\"}\r\n"), "{p}");
        assert_eq!(p.matches("PX\r\n$5\r\n60000").count(), 3, "{p}");
        assert!(!packed(RedisCommand::Set, None).contains("PX"));
    }

    #[test]
    fn hset_replaces_each_rows_hash_whole_in_one_transaction() {
        let p = packed(RedisCommand::Hset, Some(1_000));
        assert!(p.starts_with("*1\r\n$5\r\nMULTI"), "{p}");
        assert!(p.contains("EXEC"), "{p}");
        assert_eq!(p.matches("DEL\r\n").count(), 3, "{p}");
        // A null column is no field; a row of nulls is no hash (only its DEL).
        assert!(
            p.contains("HSET\r\n$3\r\nk:a\r\n$7\r\nitem_id\r\n$1\r\na\r\n$1\r\nn\r\n$1\r\n1"),
            "{p}"
        );
        assert!(
            p.contains("*4\r\n$4\r\nHSET\r\n$3\r\nk:b\r\n$7\r\nitem_id\r\n$1\r\nb\r\n"),
            "{p}"
        );
        assert_eq!(p.matches("HSET\r\n").count(), 2, "{p}");
        assert_eq!(p.matches("PEXPIRE\r\n").count(), 2, "{p}");
    }

    #[test]
    fn a_deleted_row_deletes_its_key_and_writes_nothing() {
        let deletes = BooleanArray::from(vec![false, true, false]);
        for command in [RedisCommand::Set, RedisCommand::Hset] {
            let p = packed_changes(command, Some(1_000), Some(&deletes));
            assert!(p.contains("DEL\r\n$3\r\nk:b\r\n"), "{p}");
            assert!(!p.contains("HSET\r\n$3\r\nk:b"), "{p}");
            assert!(!p.contains("SET\r\n$3\r\nk:b"), "{p}");
            assert!(p.contains("k:a\r\n"), "{p}");
        }
        let set = packed_changes(RedisCommand::Set, None, Some(&deletes));
        assert_eq!(set.matches("\r\nSET\r\n").count(), 2, "{set}");
        assert_eq!(set.matches("\r\nDEL\r\n").count(), 1, "{set}");
    }
}
