//! Elasticsearch / OpenSearch sink: every row is indexed as a document under its `_id` (the
//! rendered key) in the index its template names, through the `_bulk` API. Documents are
//! buffered (the last of an `_id` wins) and sent at every checkpoint barrier, when they
//! reach `bulk_size` bytes, and a second after the oldest arrived. Requests that get no
//! answer, 429 or a server error are retried with exponential backoff; so are the items a
//! bulk response refuses with 429. Any other refused item fails the task with its `_id`,
//! index and the server's reason. A replay indexes the same ids again: at-least-once
//! delivery gives exactly-once results per id.

mod backoff;
mod bulk;
mod client;
mod error;
mod index;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow::array::{BooleanArray, RecordBatch};
use kappa_job::elasticsearch::{Auth, ElasticsearchTarget, IndexName};
use kappa_job::secret::SecretSources;
use kappa_job::template::KeyTemplate;
use kappa_runtime::TaskError;
use kappa_runtime::io::Sink;
use reqwest::Url;
use reqwest::header::HeaderValue;

use self::backoff::Backoff;
pub use self::backoff::RetryPolicy;
use self::bulk::Doc;
use self::client::{Credentials, Nodes};
pub use self::error::EsError;
use crate::ConnectorError;
use crate::json::encode_rows;
use crate::key::render_keys;

/// The oldest buffered document is sent within this long even without a checkpoint (as
/// Flink's Elasticsearch sink does, `sink.bulk-flush.interval`).
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Indexes the rows of one sink subtask.
pub struct ElasticsearchSink {
    nodes: Nodes,
    index: IndexName,
    key: KeyTemplate,
    bulk_size: usize,
    retry: RetryPolicy,
    /// Documents since the last flush, in arrival order.
    docs: Vec<Doc>,
    /// Where each (index, `_id`) is in `docs`: a later row replaces it.
    positions: HashMap<(String, String), usize>,
    /// The bulk body `docs` make, about.
    bytes: usize,
    /// When the oldest of `docs` arrived.
    oldest: Option<Instant>,
}

impl ElasticsearchSink {
    /// Connects to the nodes of `target` with its credentials (secrets read through
    /// `secrets`; `uid` names the sink's fields) and creates its index template if the
    /// cluster has none of that name.
    pub fn open(
        target: &ElasticsearchTarget,
        secrets: &SecretSources,
        uid: &str,
        key: KeyTemplate,
        retry: RetryPolicy,
    ) -> Result<Self, EsError> {
        let nodes = target
            .nodes
            .iter()
            .map(|n| {
                Url::parse(n).map_err(|source| EsError::Node {
                    node: n.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ca = match &target.ca_file {
            Some(path) => {
                let shown = path.display().to_string();
                match std::fs::read(path) {
                    Ok(pem) => Some((shown, pem)),
                    Err(source) => {
                        return Err(EsError::CaFile {
                            path: shown,
                            source,
                        });
                    }
                }
            }
            None => None,
        };
        let credentials = credentials(&target.auth, secrets, uid)?;
        let mut nodes = Nodes::new(nodes, ca, credentials)?;
        if let Some(template) = &target.template {
            let mut backoff = retry.start();
            if retrying(&mut backoff, || nodes.ensure_template(template))? {
                tracing::info!(template = %template.name, "elasticsearch sink created its index template");
            }
        }
        tracing::info!(nodes = %target.nodes.join(","), index = %target.index.text, "elasticsearch sink ready");
        Ok(Self {
            nodes,
            index: target.index.clone(),
            key,
            bulk_size: usize::try_from(target.bulk_size).unwrap_or(usize::MAX),
            retry,
            docs: Vec::new(),
            positions: HashMap::new(),
            bytes: 0,
            oldest: None,
        })
    }

    fn due(&self) -> bool {
        self.bytes >= self.bulk_size || self.oldest.is_some_and(|t| t.elapsed() >= FLUSH_INTERVAL)
    }

    /// Buffers `doc`, replacing an earlier document of its index and `_id`.
    fn buffer(&mut self, doc: Doc) {
        self.bytes += doc.size();
        match self.positions.get(&(doc.index.clone(), doc.id.clone())) {
            Some(&at) => {
                self.bytes = self.bytes.saturating_sub(self.docs[at].size());
                self.docs[at] = doc;
            }
            None => {
                self.positions
                    .insert((doc.index.clone(), doc.id.clone()), self.docs.len());
                self.docs.push(doc);
            }
        }
    }

    /// Indexes `docs`, retrying what may pass later until the policy's deadline.
    fn send(&mut self, mut docs: Vec<Doc>) -> Result<(), EsError> {
        let mut backoff = self.retry.start();
        while !docs.is_empty() {
            let body = bulk::body(&docs);
            let (node, answer) = retrying(&mut backoff, || self.nodes.bulk(body.clone()))?;
            let outcome = bulk::outcome(&node, &answer, &docs)?;
            if outcome.retry.is_empty() {
                break;
            }
            let count = outcome.retry.len();
            let mut retry = outcome.retry.into_iter().peekable();
            let mut position = 0;
            docs.retain(|_| {
                let keep = retry.next_if_eq(&position).is_some();
                position += 1;
                keep
            });
            backoff.wait(EsError::Throttled { count })?;
        }
        Ok(())
    }
}

/// Runs `op` until it succeeds, fails for good, or `backoff` gives up.
fn retrying<T>(
    backoff: &mut Backoff,
    mut op: impl FnMut() -> Result<T, EsError>,
) -> Result<T, EsError> {
    loop {
        match op() {
            Err(e) if e.transient() => backoff.wait(e)?,
            result => return result,
        }
    }
}

/// The credentials of `auth`, its secrets read here.
fn credentials(auth: &Auth, secrets: &SecretSources, uid: &str) -> Result<Credentials, EsError> {
    Ok(match auth {
        Auth::None => Credentials::None,
        Auth::Basic { username, password } => {
            let field = format!("{uid}.password");
            let password = secrets.resolve(password, &field)?;
            Credentials::Basic {
                username: username.clone(),
                password: password.value(&field)?.to_string(),
            }
        }
        Auth::ApiKey(key) => {
            let field = format!("{uid}.api_key");
            let key = secrets.resolve(key, &field)?;
            let mut value = HeaderValue::from_str(&format!("ApiKey {}", key.value(&field)?))
                .map_err(|source| EsError::ApiKey { field, source })?;
            value.set_sensitive(true);
            Credentials::ApiKey(value)
        }
    })
}

impl ElasticsearchSink {
    /// Buffers the documents of `batch`, deleting those of the rows `deletes` marks.
    fn documents(
        &mut self,
        batch: &RecordBatch,
        deletes: Option<&BooleanArray>,
    ) -> Result<(), TaskError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ids = render_keys(&self.key, batch).map_err(EsError::Encode)?;
        let indexes = index::index_names(&self.index, batch, &ids)?;
        let sources = encode_rows(batch).map_err(EsError::Encode)?;
        if sources.len() != ids.len() {
            let why = format!("{} JSON rows for {} rows", sources.len(), ids.len());
            return Err(EsError::Encode(ConnectorError::Format(why)).into());
        }
        for (row, ((id, index), source)) in ids.into_iter().zip(indexes).zip(sources).enumerate() {
            let deleted = deletes.is_some_and(|d| d.value(row));
            let source = (!deleted).then_some(source);
            self.buffer(Doc { index, id, source });
        }
        self.oldest.get_or_insert_with(Instant::now);
        if self.due() {
            self.flush()?;
        }
        Ok(())
    }
}

impl Sink for ElasticsearchSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        self.documents(batch, None)
    }

    fn write_changes(
        &mut self,
        batch: &RecordBatch,
        deletes: &BooleanArray,
    ) -> Result<(), TaskError> {
        self.documents(batch, Some(deletes))
    }

    /// Sends every buffered document: indexed when this returns.
    fn flush(&mut self) -> Result<(), TaskError> {
        if self.docs.is_empty() {
            return Ok(());
        }
        let docs = std::mem::take(&mut self.docs);
        let count = docs.len();
        self.positions.clear();
        self.bytes = 0;
        self.oldest = None;
        self.send(docs)?;
        tracing::debug!(documents = count, "elasticsearch sink flushed");
        Ok(())
    }

    /// Sends documents buffered longer than the flush interval while the task waits.
    fn check(&mut self) -> Result<(), TaskError> {
        if self.due() { self.flush() } else { Ok(()) }
    }
}
