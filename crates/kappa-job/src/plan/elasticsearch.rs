//! Planning an Elasticsearch / OpenSearch sink: its nodes (`url`), the `_id` (`key`), the
//! index-name template (`index`), credentials (`username` + `password`, or `api_key`), TLS
//! (`ca_file`), the index template to create (`index_template` + `mapping`) and `bulk_size`,
//! each problem located in the file; and the refusal of these settings on other connectors.

use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use toml::Spanned;

use super::{Planner, SinkKind, redact_url, span};
use crate::elasticsearch::{
    Auth, DEFAULT_BULK_SIZE, ElasticsearchTarget, IndexName, IndexTemplate, template_name_problem,
};
use crate::spec::SinkSpec;

/// The largest `bulk_size`: Elasticsearch refuses requests over 100 MB by default
/// (`http.max_content_length`).
const MAX_BULK_SIZE: u64 = 100_000_000;

impl Planner<'_> {
    /// Refuses the settings only the elasticsearch connector takes.
    pub(super) fn forbid_elasticsearch_settings(&mut self, s: &SinkSpec, prefix: &str) {
        let why = |name: &str| format!("`{name}` applies to the elasticsearch connector only");
        let strings = [
            ("index", &s.index),
            ("username", &s.username),
            ("ca_file", &s.ca_file),
            ("index_template", &s.index_template),
        ];
        for (name, v) in strings {
            self.forbid(v, &format!("{prefix}.{name}"), &why(name));
        }
        self.forbid(&s.api_key, &format!("{prefix}.api_key"), &why("api_key"));
        self.forbid(&s.mapping, &format!("{prefix}.mapping"), &why("mapping"));
        self.forbid(
            &s.bulk_size,
            &format!("{prefix}.bulk_size"),
            &why("bulk_size"),
        );
    }

    /// An elasticsearch sink whose rows have the columns of `output` (known unless planning
    /// the job's logic already failed).
    pub(super) fn elasticsearch_sink(
        &mut self,
        s: &SinkSpec,
        prefix: &str,
        output: &SchemaRef,
        output_known: bool,
    ) -> SinkKind {
        let field = |name: &str| format!("{prefix}.{name}");
        let nodes = self.elasticsearch_nodes(s, prefix);
        self.required(
            &s.key,
            &field("key"),
            "the elasticsearch sink indexes each row under a document `_id`: set `key`, e.g. \"{item_id}-{window_end}\"",
        );
        let text = self.required(
            &s.index,
            &field("index"),
            "the elasticsearch sink needs the index to write, e.g. \"hourly-{window_start:%Y-%m}\"",
        );
        let mut index = IndexName {
            text: text.clone(),
            parts: Vec::new(),
        };
        if let Some(i) = s
            .index
            .as_ref()
            .filter(|_| output_known && !text.is_empty())
        {
            match IndexName::parse(&text, output) {
                Ok(parsed) => index = parsed,
                Err(e) => self.err(span(i), &field("index"), e),
            }
        }
        let auth = self.elasticsearch_auth(s, prefix);
        let ca_file = s.ca_file.as_ref().map(|f| {
            let path = PathBuf::from(f.get_ref().trim());
            if !path.is_absolute() {
                self.err(
                    span(f),
                    &field("ca_file"),
                    "must be an absolute path (read on the jobmanager and every taskmanager)",
                );
            }
            if nodes.iter().any(|n| !n.starts_with("https:")) {
                self.err(
                    span(f),
                    &field("ca_file"),
                    "applies to https nodes only: every node of `url` must be https://…",
                );
            }
            path
        });
        let template = self.elasticsearch_template(s, prefix, &index);
        let bulk_size = match &s.bulk_size {
            Some(b) if b.get_ref().0 == 0 || b.get_ref().0 > MAX_BULK_SIZE => {
                let why = format!(
                    "must be between 1 byte and {MAX_BULK_SIZE} bytes (Elasticsearch's default http.max_content_length)"
                );
                self.err(span(b), &field("bulk_size"), why);
                DEFAULT_BULK_SIZE
            }
            Some(b) => b.get_ref().0,
            None => DEFAULT_BULK_SIZE,
        };
        SinkKind::Elasticsearch(Box::new(ElasticsearchTarget {
            nodes,
            index,
            auth,
            ca_file,
            template,
            bulk_size,
        }))
    }

    /// The base URLs of `url`'s comma-separated nodes.
    fn elasticsearch_nodes(&mut self, s: &SinkSpec, prefix: &str) -> Vec<String> {
        let field = format!("{prefix}.url");
        let url = self.required(
            &s.url,
            &field,
            "the elasticsearch connector needs its nodes, e.g. \"https://es1:9200,https://es2:9200\"",
        );
        let at = s.url.as_ref().and_then(span);
        let mut nodes = Vec::new();
        for node in url.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match node_problem(node) {
                Some(why) => {
                    let why = format!("node `{}`: {why}", redact_url(node));
                    self.err(at.clone(), &field, why);
                }
                None => nodes.push(node.trim_end_matches('/').to_string()),
            }
        }
        nodes
    }

    /// `username` + `password`, or `api_key`, or neither.
    fn elasticsearch_auth(&mut self, s: &SinkSpec, prefix: &str) -> Auth {
        let field = |name: &str| format!("{prefix}.{name}");
        if let Some(key) = &s.api_key {
            if s.username.is_some() || s.password.is_some() {
                self.err(
                    span(key),
                    &field("api_key"),
                    "give either `api_key` or `username` and `password`, not both",
                );
            }
            return Auth::ApiKey(self.secret(key, &field("api_key")));
        }
        match (&s.username, &s.password) {
            (Some(user), password) => {
                let username = user.get_ref().trim().to_string();
                if username.is_empty() {
                    self.err(span(user), &field("username"), "must not be empty");
                }
                let password = self.required_secret(
                    password,
                    &field("password"),
                    span(user),
                    "`username` needs its `password` (e.g. \"${env:ES_PASSWORD}\")",
                );
                Auth::Basic { username, password }
            }
            (None, Some(p)) => {
                self.err(
                    span(p),
                    &field("password"),
                    "`password` needs `username` (or give an `api_key` instead)",
                );
                Auth::None
            }
            (None, None) => Auth::None,
        }
    }

    /// The index template of `index_template` and `mapping`, given together.
    fn elasticsearch_template(
        &mut self,
        s: &SinkSpec,
        prefix: &str,
        index: &IndexName,
    ) -> Option<IndexTemplate> {
        let field = |name: &str| format!("{prefix}.{name}");
        let (name, mapping) = match (&s.index_template, &s.mapping) {
            (Some(n), Some(m)) => (n, m),
            (Some(n), None) => {
                let why = "an index template needs the `mapping` of its indices, e.g. mapping = { properties = { click_count = { type = \"long\" } } }";
                self.err(span(n), &field("mapping"), format!("missing: {why}"));
                return None;
            }
            (None, Some(m)) => {
                let why = "the mapping is put as an index template: name it in `index_template`, e.g. \"kappa-hourly\"";
                self.err(span(m), &field("index_template"), format!("missing: {why}"));
                return None;
            }
            (None, None) => return None,
        };
        let template_name = name.get_ref().trim().to_string();
        if let Some(why) = template_name_problem(&template_name) {
            self.err(span(name), &field("index_template"), why);
        }
        let mappings = self.mapping_object(mapping, &field("mapping"))?;
        Some(IndexTemplate {
            name: template_name,
            patterns: vec![index.pattern()],
            mappings,
        })
    }

    /// `mapping` as a JSON object: JSON text, or an inline table.
    fn mapping_object(
        &mut self,
        m: &Spanned<toml::Value>,
        field: &str,
    ) -> Option<serde_json::Value> {
        let parsed = match m.get_ref() {
            toml::Value::String(text) => {
                serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
            }
            other => {
                serde_json::to_value(other).map_err(|e| format!("cannot be written as JSON: {e}"))
            }
        };
        let why = match parsed {
            Ok(value) if value.is_object() => return Some(value),
            Ok(_) => {
                "must be an object: a table, or JSON text such as '{\"properties\": {…}}'".into()
            }
            Err(why) => why,
        };
        self.err(span(m), field, why);
        None
    }
}

/// Why `node` cannot be the base URL of a node, if it cannot.
fn node_problem(node: &str) -> Option<String> {
    let parsed = match url::Url::parse(node) {
        Ok(u) => u,
        Err(e) => return Some(format!("not a URL ({e}): write e.g. https://es1:9200")),
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return Some(format!("scheme `{}`: use http or https", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Some("no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some(
            "credentials in the URL: give them as `username` and `password` (or `api_key`)".into(),
        );
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Some("a node is a base URL, without `?…` or `#…`".into());
    }
    None
}

#[cfg(test)]
mod tests;
