//! The PostgreSQL side of an upgrade. The shadow table is created like the live one (same
//! columns, defaults, constraints and indexes, so the postgres sink upserts into it by `id`).
//! The swap keeps the live table itself, so views, grants and foreign keys on it keep working,
//! and makes its rows equal the shadow's in one transaction: readers see v1's rows until it
//! commits and v2's after. It first copies the live rows into a backup table (v1's results, for
//! a rollback) and ends by dropping the shadow; a backup without a shadow means the swap
//! committed, so running it again after a crash changes nothing.
//!
//! Table names are read as PostgreSQL reads them in SQL (`analytics.clicks`, unquoted parts in
//! lower case, `"Quoted"` parts as they are), as the postgres sink does.

use std::collections::BTreeMap;

use kappa_job::plan::POSTGRES_ID;
use kappa_job::secret::Secret;
use postgres::{Client, GenericClient, Transaction};

use super::UpgradeSinkError;
use crate::postgres::{connect, quote};

/// PostgreSQL's longest identifier in bytes (NAMEDATALEN - 1); it cuts longer ones silently.
const NAME_MAX: usize = 63;
/// How long the swap waits for its locks (behind a writer's open transaction) before failing,
/// retryably.
const LOCK_TIMEOUT: &str = "30s";

/// A table name as PostgreSQL reads it in SQL: an optional schema and the table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableName {
    /// As the job wrote it, for messages.
    text: String,
    schema: Option<String>,
    table: String,
}

impl TableName {
    /// Reads `table` or `schema.table`; unquoted parts are folded to lower case, quoted ones
    /// (`"My Table"`, `""` for a quote) kept as they are.
    fn parse(text: &str) -> Result<Self, UpgradeSinkError> {
        let bad = |reason| UpgradeSinkError::BadName {
            name: text.to_string(),
            reason,
        };
        let mut parts = Vec::new();
        let mut rest = text;
        loop {
            let (part, after) = match rest.strip_prefix('"') {
                Some(quoted) => {
                    unquote(quoted).ok_or_else(|| bad("a quoted part is not closed"))?
                }
                None => {
                    let end = rest.find('.').unwrap_or(rest.len());
                    let (word, after) = rest.split_at(end);
                    if !is_plain_identifier(word) {
                        return Err(bad(
                            "each part is a letter or `_` followed by letters, digits, `_` or `$`, or is quoted",
                        ));
                    }
                    (word.to_ascii_lowercase(), after)
                }
            };
            if part.is_empty() {
                return Err(bad("a quoted part is empty"));
            }
            if part.len() > NAME_MAX {
                return Err(bad(
                    "a part is longer than 63 bytes (PostgreSQL would shorten it)",
                ));
            }
            parts.push(part);
            match after.strip_prefix('.') {
                Some(next) => rest = next,
                None if after.is_empty() => break,
                None => return Err(bad("a quoted part is followed by something else than `.`")),
            }
        }
        let mut parts = parts.into_iter();
        let (schema, table) = match (parts.next(), parts.next(), parts.next()) {
            (Some(table), None, None) => (None, table),
            (Some(schema), Some(table), None) => (Some(schema), table),
            _ => return Err(bad("it is neither `table` nor `schema.table`")),
        };
        Ok(Self {
            text: text.to_string(),
            schema,
            table,
        })
    }

    /// The name for SQL text, each part quoted.
    fn sql(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(&self.table)),
            None => quote(&self.table),
        }
    }
}

/// The identifier after an opening quote, up to its closing quote (`""` is a quote inside),
/// and what follows; None without a closing quote.
fn unquote(quoted: &str) -> Option<(String, &str)> {
    let mut part = String::new();
    let mut chars = quoted.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            part.push(c);
        } else if chars.next_if(|&(_, c)| c == '"').is_some() {
            part.push('"');
        } else {
            return Some((part, &quoted[i + 1..]));
        }
    }
    None
}

/// An identifier PostgreSQL takes without quotes (folding its ASCII letters to lower case).
fn is_plain_identifier(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii())
}

/// What a swap changed in the live table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwapCounts {
    /// Rows only the shadow had.
    pub inserted: u64,
    /// Rows of both whose values differed.
    pub updated: u64,
    /// Rows only the live table had (with `delete_vanished`).
    pub deleted: u64,
}

/// How a swap ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapOutcome {
    /// The live table now holds the shadow's rows.
    Swapped(SwapCounts),
    /// An earlier swap committed (the backup is there, the shadow gone): nothing was done.
    AlreadySwapped,
}

/// A connection and the server it reaches (`host:port/database`, for messages).
struct Server {
    client: Client,
    target: String,
}

impl Server {
    /// Connects to do `what`.
    fn connect(url: &str, password: Option<&Secret>, what: &str) -> Result<Self, UpgradeSinkError> {
        let (client, target) = connect(url, password).map_err(UpgradeSinkError::task(what))?;
        Ok(Self { client, target })
    }
}

/// The error of a statement that failed while doing `what` on `target`.
fn failed(what: &str, target: &str) -> impl Fn(postgres::Error) -> UpgradeSinkError + use<> {
    let (what, target) = (what.to_string(), target.to_string());
    move |source| UpgradeSinkError::Postgres {
        what: what.clone(),
        target: target.clone(),
        source,
    }
}

/// Whether table `name` exists.
fn exists(client: &mut impl GenericClient, name: &TableName) -> Result<bool, postgres::Error> {
    client
        .query_one(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &[&name.sql()],
        )?
        .try_get(0)
}

/// [`UpgradeSinkError::NoTable`] unless table `name` exists on `target`; `fail` makes the
/// error of a failed lookup.
fn require(
    client: &mut impl GenericClient,
    name: &TableName,
    target: &str,
    fail: impl Fn(postgres::Error) -> UpgradeSinkError,
) -> Result<(), UpgradeSinkError> {
    if exists(client, name).map_err(fail)? {
        return Ok(());
    }
    Err(UpgradeSinkError::NoTable {
        table: name.text.clone(),
        target: target.to_string(),
    })
}

/// Creates `shadow` like `live` (columns, defaults, constraints, indexes) unless it exists.
/// `password` (resolved) is the sink's, when `url` has none.
pub fn create_shadow(
    url: &str,
    password: Option<&Secret>,
    live: &str,
    shadow: &str,
) -> Result<(), UpgradeSinkError> {
    let (live_name, shadow_name) = (TableName::parse(live)?, TableName::parse(shadow)?);
    let what = format!("creating the shadow table `{shadow}` like `{live}`");
    let mut server = Server::connect(url, password, &what)?;
    let fail = failed(&what, &server.target);
    require(&mut server.client, &live_name, &server.target, &fail)?;
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING ALL)",
        shadow_name.sql(),
        live_name.sql()
    );
    server.client.batch_execute(&sql).map_err(&fail)?;
    tracing::info!(server = %server.target, live, shadow, "shadow table ready");
    Ok(())
}

/// Every row of `table`: its id → the other columns as a JSON object (`to_jsonb`), for the
/// diff of live and shadow.
pub fn rows(
    url: &str,
    password: Option<&Secret>,
    table: &str,
) -> Result<BTreeMap<String, serde_json::Value>, UpgradeSinkError> {
    let name = TableName::parse(table)?;
    let what = format!("reading the rows of `{table}`");
    let mut server = Server::connect(url, password, &what)?;
    let fail = failed(&what, &server.target);
    require(&mut server.client, &name, &server.target, &fail)?;
    // `r.*`: the whole row even when a column is named like the alias.
    let sql = format!(
        "SELECT r.{}::text, (pg_catalog.to_jsonb(r.*) - $1)::text FROM {} AS r",
        quote(POSTGRES_ID),
        name.sql()
    );
    let mut out = BTreeMap::new();
    for row in server.client.query(&sql, &[&POSTGRES_ID]).map_err(&fail)? {
        let (id, json): (String, String) = (
            row.try_get(0).map_err(&fail)?,
            row.try_get(1).map_err(&fail)?,
        );
        let value = serde_json::from_str(&json).map_err(|source| UpgradeSinkError::RowJson {
            table: table.to_string(),
            target: server.target.clone(),
            source,
        })?;
        out.insert(id, value);
    }
    Ok(out)
}

/// The least value of the integer column `column` in `table` (None: no rows), e.g. how far
/// back a sink's windows go.
pub fn min_of(
    url: &str,
    password: Option<&Secret>,
    table: &str,
    column: &str,
) -> Result<Option<i64>, UpgradeSinkError> {
    let name = TableName::parse(table)?;
    let what = format!("reading the least `{column}` of `{table}`");
    let mut server = Server::connect(url, password, &what)?;
    let fail = failed(&what, &server.target);
    require(&mut server.client, &name, &server.target, &fail)?;
    let sql = format!("SELECT min({})::bigint FROM {}", quote(column), name.sql());
    let row = server.client.query_one(&sql, &[]).map_err(&fail)?;
    row.try_get(0).map_err(&fail)
}

/// The statements of a swap, for the live, shadow and backup tables (SQL names) and the
/// live table's writable columns (quoted, `id` among them).
#[derive(Debug, PartialEq, Eq)]
struct SwapStatements {
    /// Create the backup and copy the live rows into it.
    backup: [String; 2],
    /// Delete the live rows the shadow does not have (with `delete_vanished`).
    delete: Option<String>,
    /// Set the live rows whose values differ from the shadow's row of their id (None when
    /// `id` is the only column).
    update: Option<String>,
    /// Insert the shadow rows whose id the live table does not have.
    insert: String,
}

impl SwapStatements {
    fn new(
        live: &str,
        shadow: &str,
        backup: &str,
        columns: &[String],
        delete_vanished: bool,
    ) -> Self {
        let id = quote(POSTGRES_ID);
        let list = columns.join(", ");
        let of = |alias: &str, text: bool| -> Vec<String> {
            let cast = if text { "::text" } else { "" };
            columns
                .iter()
                .filter(|c| !text || **c != id)
                .map(|c| format!("{alias}.{c}{cast}"))
                .collect()
        };
        let values: Vec<&String> = columns.iter().filter(|c| **c != id).collect();
        // Compared as text: every type has a text form, not every one an equality (json).
        let update = (!values.is_empty()).then(|| {
            let set: Vec<String> = values.iter().map(|c| format!("{c} = s.{c}")).collect();
            format!(
                "UPDATE {live} AS l SET {} FROM {shadow} AS s WHERE l.{id} = s.{id} \
                 AND ({}) IS DISTINCT FROM ({})",
                set.join(", "),
                of("l", true).join(", "),
                of("s", true).join(", ")
            )
        });
        Self {
            backup: [
                format!("CREATE TABLE {backup} (LIKE {live} INCLUDING ALL)"),
                format!("INSERT INTO {backup} ({list}) SELECT {list} FROM {live}"),
            ],
            delete: delete_vanished.then(|| {
                format!(
                    "DELETE FROM {live} AS l WHERE NOT EXISTS \
                     (SELECT 1 FROM {shadow} AS s WHERE s.{id} = l.{id})"
                )
            }),
            update,
            insert: format!(
                "INSERT INTO {live} ({list}) SELECT {} FROM {shadow} AS s WHERE NOT EXISTS \
                 (SELECT 1 FROM {live} AS l WHERE l.{id} = s.{id})",
                of("s", false).join(", ")
            ),
        }
    }
}

/// Replaces the rows of `live` with those of `shadow` in one transaction, keeping v1's rows in
/// `backup` (created like `live`) and dropping `shadow`; rows only `live` has are deleted with
/// `delete_vanished`, else kept. Unchanged rows are not written. Writers of `live` wait for
/// the swap (and it for them, up to 30 s); readers do not. If `backup` exists and `shadow` does
/// not, an earlier swap committed: nothing is done.
pub fn swap(
    url: &str,
    password: Option<&Secret>,
    live: &str,
    shadow: &str,
    backup: &str,
    delete_vanished: bool,
) -> Result<SwapOutcome, UpgradeSinkError> {
    let names = [
        TableName::parse(live)?,
        TableName::parse(shadow)?,
        TableName::parse(backup)?,
    ];
    let what = format!("swapping `{shadow}` into `{live}`");
    let mut server = Server::connect(url, password, &what)?;
    let target = server.target.clone();
    let fail = failed(&what, &target);
    let mut tx = server.client.transaction().map_err(&fail)?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .map_err(&fail)?;
    let [live_name, shadow_name, backup_name] = &names;
    require(&mut tx, live_name, &target, &fail)?;
    let [live_sql, shadow_sql, backup_sql] = names.each_ref().map(TableName::sql);
    // Writers wait from here; a concurrent swap too, then finds it done.
    tx.batch_execute(&format!(
        "LOCK TABLE {live_sql} IN SHARE ROW EXCLUSIVE MODE"
    ))
    .map_err(&fail)?;
    let shadow_exists = exists(&mut tx, shadow_name).map_err(&fail)?;
    match (shadow_exists, exists(&mut tx, backup_name).map_err(&fail)?) {
        (true, false) => {}
        (false, true) => {
            tracing::info!(server = %target, live, shadow, backup, "the shadow table was swapped in before");
            return Ok(SwapOutcome::AlreadySwapped);
        }
        (false, false) => {
            return Err(UpgradeSinkError::NoShadowTable {
                live: live.to_string(),
                shadow: shadow.to_string(),
                backup: backup.to_string(),
                target,
            });
        }
        (true, true) => {
            return Err(UpgradeSinkError::BackupExists {
                shadow: shadow.to_string(),
                backup: backup.to_string(),
                target,
            });
        }
    }
    let counts = replace_rows(
        &mut tx,
        [&live_sql, &shadow_sql, &backup_sql],
        delete_vanished,
    )
    .map_err(&fail)?;
    tx.batch_execute(&format!("DROP TABLE {shadow_sql}"))
        .map_err(&fail)?;
    tx.commit().map_err(&fail)?;
    tracing::info!(
        server = %target, live, shadow, backup,
        inserted = counts.inserted, updated = counts.updated, deleted = counts.deleted,
        "swapped the shadow table in"
    );
    Ok(SwapOutcome::Swapped(counts))
}

/// The swap's work once its checks passed: locks the shadow, copies the live rows into the
/// backup and makes them equal the shadow's.
fn replace_rows(
    tx: &mut Transaction<'_>,
    [live, shadow, backup]: [&str; 3],
    delete_vanished: bool,
) -> Result<SwapCounts, postgres::Error> {
    tx.batch_execute(&format!("LOCK TABLE {shadow} IN ACCESS EXCLUSIVE MODE"))?;
    let columns = tx
        .query(
            "SELECT a.attname::text FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 \
             AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
            &[&live],
        )?
        .iter()
        .map(|r| r.try_get::<_, String>(0).map(|c| quote(&c)))
        .collect::<Result<Vec<_>, _>>()?;
    let sql = SwapStatements::new(live, shadow, backup, &columns, delete_vanished);
    for statement in &sql.backup {
        tx.execute(statement.as_str(), &[])?;
    }
    let mut counts = SwapCounts::default();
    if let Some(delete) = &sql.delete {
        counts.deleted = tx.execute(delete.as_str(), &[])?;
    }
    if let Some(update) = &sql.update {
        counts.updated = tx.execute(update.as_str(), &[])?;
    }
    counts.inserted = tx.execute(sql.insert.as_str(), &[])?;
    Ok(counts)
}

/// Drops `table` if it exists (a shadow after a cancelled upgrade, a backup no longer needed).
pub fn drop_table(
    url: &str,
    password: Option<&Secret>,
    table: &str,
) -> Result<(), UpgradeSinkError> {
    let name = TableName::parse(table)?;
    let what = format!("dropping table `{table}`");
    let mut server = Server::connect(url, password, &what)?;
    server
        .client
        .batch_execute(&format!("DROP TABLE IF EXISTS {}", name.sql()))
        .map_err(failed(&what, &server.target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (Option<String>, String) {
        let n = TableName::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (n.schema, n.table)
    }

    fn refused(text: &str) -> &'static str {
        match TableName::parse(text) {
            Err(UpgradeSinkError::BadName { reason, .. }) => reason,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn names_are_read_as_postgresql_reads_them() {
        assert_eq!(parsed("clicks"), (None, "clicks".into()));
        assert_eq!(
            parsed("Analytics.Clicks__u1a2b3c4d"),
            (Some("analytics".into()), "clicks__u1a2b3c4d".into())
        );
        assert_eq!(
            parsed(r#""My Schema"."Hourly ""Clicks"".v2""#),
            (Some("My Schema".into()), r#"Hourly "Clicks".v2"#.into())
        );
        assert_eq!(parsed("_t$1.é"), (Some("_t$1".into()), "é".into()));
        assert_eq!(parsed(&"a".repeat(63)).1.len(), 63);
    }

    #[test]
    fn names_postgresql_would_not_take_as_they_are_are_refused() {
        for text in [
            "",
            "a.",
            ".a",
            "1a",
            "a b",
            "a;drop table x",
            "a-b",
            "db.s.t",
        ] {
            assert!(TableName::parse(text).is_err(), "{text}");
        }
        assert!(refused("\"open").contains("not closed"));
        assert!(refused("\"\"").contains("empty"));
        assert!(refused("\"a\"b").contains("followed"));
        assert!(refused(&"a".repeat(64)).contains("63 bytes"));
        assert!(refused("db.s.t").contains("schema.table"));
    }

    #[test]
    fn sql_names_quote_each_part() {
        let n = TableName::parse(r#"analytics."Hourly ""x"".v2""#).unwrap();
        assert_eq!(n.sql(), r#""analytics"."Hourly ""x"".v2""#);
        assert_eq!(TableName::parse("t").unwrap().sql(), r#""t""#);
    }

    #[test]
    fn the_swap_compares_every_value_column_as_text_and_deletes_only_when_asked() {
        let columns = ["\"id\"", "\"item\"", "\"n\""].map(String::from);
        let sql = SwapStatements::new("\"l\"", "\"s\"", "\"b\"", &columns, false);
        assert_eq!(sql.delete, None);
        assert_eq!(
            sql.update.as_deref(),
            Some(
                "UPDATE \"l\" AS l SET \"item\" = s.\"item\", \"n\" = s.\"n\" FROM \"s\" AS s \
                 WHERE l.\"id\" = s.\"id\" AND (l.\"item\"::text, l.\"n\"::text) \
                 IS DISTINCT FROM (s.\"item\"::text, s.\"n\"::text)"
            )
        );
        assert_eq!(
            sql.insert,
            "INSERT INTO \"l\" (\"id\", \"item\", \"n\") SELECT s.\"id\", s.\"item\", s.\"n\" \
             FROM \"s\" AS s WHERE NOT EXISTS (SELECT 1 FROM \"l\" AS l WHERE l.\"id\" = s.\"id\")"
        );
        assert_eq!(
            sql.backup[1],
            "INSERT INTO \"b\" (\"id\", \"item\", \"n\") SELECT \"id\", \"item\", \"n\" FROM \"l\""
        );
        let ids_only = SwapStatements::new("\"l\"", "\"s\"", "\"b\"", &columns[..1], true);
        assert_eq!(ids_only.update, None);
        assert!(
            ids_only
                .delete
                .is_some_and(|d| d.starts_with("DELETE FROM \"l\" AS l"))
        );
    }
}
