//! The `_bulk` API: the NDJSON body of `index` actions (each document under its `_index` and
//! `_id`) and `delete` actions (a change stream's deleted keys), and what a response says of
//! each item — done, refused with 429 (to send again), or refused for good (the first such
//! item's `_id`, index and reason). Deleting a document that is not there is done.

use serde::Deserialize;

use super::error::EsError;

/// One document to index, or to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    pub index: String,
    pub id: String,
    /// The row as a JSON object; None: the document is deleted.
    pub source: Option<Vec<u8>>,
}

impl Doc {
    /// Bytes it adds to a bulk body (its action line is about as long as its names).
    pub fn size(&self) -> usize {
        self.source.as_ref().map_or(0, Vec::len) + self.index.len() + self.id.len() + 32
    }
}

/// The body of a bulk request of `docs`: an action line and a source line each, or a
/// delete's action line alone.
pub fn body<'a>(docs: impl IntoIterator<Item = &'a Doc>) -> Vec<u8> {
    let mut out = Vec::new();
    for d in docs {
        let action = match d.source {
            Some(_) => "index",
            None => "delete",
        };
        let line = serde_json::json!({action: {"_index": d.index, "_id": d.id}});
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
        if let Some(source) = &d.source {
            out.extend_from_slice(source);
            out.push(b'\n');
        }
    }
    out
}

/// What a bulk response says.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Positions (in the request) of the items refused with 429, to send again.
    pub retry: Vec<usize>,
}

#[derive(Deserialize)]
struct Summary {
    errors: bool,
}

#[derive(Deserialize)]
struct Response {
    items: Vec<Entry>,
}

/// An item: `{"index": {…}}` (or another action's name).
#[derive(Deserialize)]
struct Entry {
    #[serde(alias = "create", alias = "update", alias = "delete")]
    index: Item,
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "_index", default)]
    index: Option<String>,
    #[serde(rename = "_id", default)]
    id: Option<String>,
    status: u16,
    error: Option<Cause>,
}

/// An error as Elasticsearch reports it: its type, reason and cause.
#[derive(Debug, Deserialize)]
pub struct Cause {
    #[serde(rename = "type")]
    kind: String,
    reason: Option<String>,
    caused_by: Option<Box<Cause>>,
}

impl std::fmt::Display for Cause {
    /// `type: reason; caused by type: reason`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(r) = &self.reason {
            write!(f, ": {r}")?;
        }
        if let Some(c) = &self.caused_by {
            write!(f, "; caused by {c}")?;
        }
        Ok(())
    }
}

/// The error of an error response's body (`{"error": {…}, "status": …}`), if it is one.
pub fn error_cause(body: &str) -> Option<Cause> {
    #[derive(Deserialize)]
    struct Body {
        error: Cause,
    }
    serde_json::from_str::<Body>(body).ok().map(|b| b.error)
}

/// Reads the response to a bulk request of `sent` documents sent to `node`: the items to
/// send again, or the first item refused for good.
pub fn outcome(node: &str, text: &str, sent: &[Doc]) -> Result<Outcome, EsError> {
    let malformed = |source| EsError::Malformed {
        node: node.to_string(),
        what: "bulk request",
        source,
    };
    if !serde_json::from_str::<Summary>(text)
        .map_err(malformed)?
        .errors
    {
        return Ok(Outcome { retry: Vec::new() });
    }
    let items = serde_json::from_str::<Response>(text)
        .map_err(malformed)?
        .items;
    if items.len() != sent.len() {
        return Err(EsError::ItemCount {
            node: node.to_string(),
            sent: sent.len(),
            answered: items.len(),
        });
    }
    let mut retry = Vec::new();
    let mut refused: Vec<(usize, Item)> = Vec::new();
    for (i, Entry { index: item }) in items.into_iter().enumerate() {
        match item.status {
            200..=299 => {}
            404 if sent[i].source.is_none() => {}
            429 => retry.push(i),
            _ => refused.push((i, item)),
        }
    }
    let more = refused.len().saturating_sub(1);
    match refused.into_iter().next() {
        None => Ok(Outcome { retry }),
        Some((i, item)) => Err(EsError::Rejected {
            id: item.id.unwrap_or_else(|| sent[i].id.clone()),
            index: item.index.unwrap_or_else(|| sent[i].index.clone()),
            status: item.status,
            reason: item
                .error
                .map_or_else(|| "no reason given".to_string(), |c| c.to_string()),
            more,
        }),
    }
}

#[cfg(test)]
mod tests;
