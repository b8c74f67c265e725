//! A client of a Confluent-compatible schema registry's REST API: a schema by id
//! (`GET /schemas/ids/{id}`), the latest schema of a subject
//! (`GET /subjects/{subject}/versions/latest`) and registering one
//! (`POST /subjects/{subject}/versions`), with basic authentication.

use std::time::Duration;

use kappa_job::plan::formats::SchemaRegistry;
use reqwest::blocking::{Client, RequestBuilder};
use serde::Deserialize;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No answer, or a server error: worth a retry.
    #[error("schema registry {url} did not answer: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("schema registry {url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    /// The registry knows no schema of this id (404).
    #[error("schema id {0} is unknown to the schema registry")]
    UnknownId(u32),
    /// The job's registry url does not parse.
    #[error("schema registry url {url}")]
    BadUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    /// The HTTP client could not be built (its TLS settings).
    #[error("creating the schema registry client")]
    Client(#[source] reqwest::Error),
}

impl RegistryError {
    /// Whether asking again later may help (no answer, or a 5xx).
    pub fn retriable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Refused { status, .. } => *status >= 500,
            Self::UnknownId(_) | Self::BadUrl { .. } | Self::Client(_) => false,
        }
    }
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(default)]
    id: Option<u32>,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

/// One registry and subject; `password` already resolved.
pub struct RegistryClient {
    base: reqwest::Url,
    subject: String,
    auth: Option<(String, Option<String>)>,
    http: Client,
}

impl RegistryClient {
    pub fn new(registry: &SchemaRegistry, password: Option<String>) -> Result<Self, RegistryError> {
        let base = reqwest::Url::parse(&registry.url).map_err(|source| RegistryError::BadUrl {
            url: registry.url.clone(),
            source,
        })?;
        let http = Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(RegistryError::Client)?;
        Ok(Self {
            base,
            subject: registry.subject.clone(),
            auth: registry.username.clone().map(|u| (u, password)),
            http,
        })
    }

    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: RequestBuilder,
        url: &reqwest::Url,
        id: Option<u32>,
    ) -> Result<T, RegistryError> {
        let request = match &self.auth {
            Some((user, password)) => request.basic_auth(user, password.as_ref()),
            None => request,
        };
        let shown = url.to_string();
        let unreachable = |source| RegistryError::Unreachable {
            url: shown.clone(),
            source,
        };
        let answer = request
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .map_err(unreachable)?;
        let status = answer.status();
        if status == reqwest::StatusCode::NOT_FOUND
            && let Some(id) = id
        {
            return Err(RegistryError::UnknownId(id));
        }
        if !status.is_success() {
            let body = answer.text().unwrap_or_default();
            return Err(RegistryError::Refused {
                url: shown,
                status: status.as_u16(),
                body: body.chars().take(500).collect(),
            });
        }
        answer.json().map_err(unreachable)
    }

    /// The schema (JSON text) registered under `id`.
    pub fn schema(&self, id: u32) -> Result<String, RegistryError> {
        let url = self.url(&["schemas", "ids", &id.to_string()]);
        let a: SchemaAnswer = self.send(self.http.get(url.clone()), &url, Some(id))?;
        Ok(a.schema)
    }

    /// The id and schema of the subject's latest version.
    pub fn latest(&self) -> Result<(u32, String), RegistryError> {
        let url = self.url(&["subjects", &self.subject, "versions", "latest"]);
        let a: SchemaAnswer = self.send(self.http.get(url.clone()), &url, None)?;
        let id = a.id.ok_or_else(|| RegistryError::Refused {
            url: url.to_string(),
            status: 200,
            body: "the latest version has no id".into(),
        })?;
        Ok((id, a.schema))
    }

    /// Registers `schema` under the subject (or finds it registered) and returns its id.
    pub fn register(&self, schema: &str) -> Result<u32, RegistryError> {
        let url = self.url(&["subjects", &self.subject, "versions"]);
        let body = serde_json::json!({ "schema": schema }).to_string();
        let request = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body);
        let a: IdAnswer = self.send(request, &url, None)?;
        Ok(a.id)
    }
}
