//! HTTP to the cluster's nodes (reqwest's blocking client with rustls): TLS with the job's
//! CA file, basic or API-key authentication on every request, requests spread over the
//! nodes — the next one after a node that did not answer — and the answers read as the
//! typed errors of [`EsError`] (a refused certificate is a setting to fix, not retried).

use std::time::Duration;

use kappa_job::elasticsearch::IndexTemplate;
use reqwest::Url;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use super::error::EsError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for one answer (a bulk request of 5 MiB included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The start of a body that is not an Elasticsearch error kept in messages.
const BODY_SHOWN: usize = 500;

/// How requests authenticate, the secrets resolved.
pub enum Credentials {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// The value of the `Authorization` header (`ApiKey <key>`), marked sensitive.
    ApiKey(HeaderValue),
}

/// The nodes of one cluster.
pub struct Nodes {
    client: Client,
    nodes: Vec<Url>,
    /// The node the next request goes to.
    next: usize,
    credentials: Credentials,
}

impl Nodes {
    /// A client of `nodes` (base URLs, at least one) trusting only the certificates of
    /// `ca` (PEM, read from `ca_file`) when given, else the system's.
    pub fn new(
        nodes: Vec<Url>,
        ca: Option<(String, Vec<u8>)>,
        credentials: Credentials,
    ) -> Result<Self, EsError> {
        if nodes.is_empty() {
            return Err(EsError::NoNodes);
        }
        let mut builder = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        if let Some((path, pem)) = ca {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|source| EsError::CaPem { path, source })?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(EsError::Client)?;
        Ok(Self {
            client,
            nodes,
            next: 0,
            credentials,
        })
    }

    /// The node requests go to now.
    fn node(&self) -> &Url {
        &self.nodes[self.next % self.nodes.len()]
    }

    /// `path` (segments) under the current node's base URL.
    fn url(&self, path: &[&str]) -> Url {
        let mut url = self.node().clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path);
        }
        url
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.credentials {
            Credentials::None => request,
            Credentials::Basic { username, password } => {
                request.basic_auth(username, Some(password))
            }
            Credentials::ApiKey(value) => request.header(AUTHORIZATION, value.clone()),
        }
    }

    /// Sends `request` for `what`; a node that does not answer makes the next node the
    /// current one. An answer with an error status is an error.
    fn send(&mut self, what: &'static str, request: RequestBuilder) -> Result<Response, EsError> {
        let node = self.node().to_string();
        let response = match self.authorized(request).send() {
            Ok(r) => r,
            Err(source) if certificate_refused(&source) => {
                return Err(EsError::Certificate { node, what, source });
            }
            Err(source) => {
                self.next = (self.next + 1) % self.nodes.len();
                return Err(EsError::Unreachable { node, what, source });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_server_error() {
            self.next = (self.next + 1) % self.nodes.len();
        }
        let body = response.text().unwrap_or_default();
        let reason = match super::bulk::error_cause(&body) {
            Some(cause) => cause.to_string(),
            None => body.chars().take(BODY_SHOWN).collect(),
        };
        Err(EsError::Status {
            node,
            what,
            status: status.as_u16(),
            reason,
        })
    }

    /// Sends one bulk request; returns the node that answered and its answer.
    pub fn bulk(&mut self, body: Vec<u8>) -> Result<(String, String), EsError> {
        let what = "bulk request";
        let request = self
            .client
            .post(self.url(&["_bulk"]))
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body);
        let node = self.node().to_string();
        let response = self.send(what, request)?;
        let text = response.text().map_err(|source| EsError::Unreachable {
            node: node.clone(),
            what,
            source,
        })?;
        Ok((node, text))
    }

    /// Creates `template` unless the cluster has an index template of its name; true when
    /// it was created.
    pub fn ensure_template(&mut self, template: &IndexTemplate) -> Result<bool, EsError> {
        let url = self.url(&["_index_template", &template.name]);
        match self.send("index template check", self.client.head(url.clone())) {
            Ok(_) => return Ok(false),
            Err(EsError::Status { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let request = self.client.put(url).json(&template.body());
        self.send("index template creation", request)?;
        Ok(true)
    }
}

/// Whether `e` or one of its causes is a node's TLS certificate refused: a setting to fix
/// (`ca_file`, the node's certificate), not a failure that passes.
fn certificate_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        let tls = c.downcast_ref::<rustls::Error>().or_else(|| {
            let io = c.downcast_ref::<std::io::Error>()?.get_ref()?;
            io.downcast_ref::<rustls::Error>()
        });
        if matches!(tls, Some(rustls::Error::InvalidCertificate(_))) {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client error wrapping `cause`, as hyper's wrap the I/O error of a handshake.
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn refused_certificates_are_found_among_the_causes() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
        assert!(certificate_refused(&Wrapper(io)));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!certificate_refused(&Wrapper(reset)));
        let other =
            std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert!(!certificate_refused(&Wrapper(other)));
    }
}
