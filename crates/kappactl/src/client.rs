//! A small JSON client of the jobmanager's REST API that turns connection failures and error
//! responses into one-line messages.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// A client of the jobmanager at `base`, sending `token` as a bearer token when given and
    /// trusting only the CAs in `ca` (PEM) over HTTPS when given.
    pub fn new(base: &str, token: Option<String>, ca: Option<&Path>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--jobmanager must be an http:// or https:// URL, got `{base}`");
        }
        let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        if let Some(ca) = ca {
            let pem =
                std::fs::read(ca).with_context(|| format!("reading --ca-cert {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca-cert {}: not PEM certificates", ca.display()))?;
            if certs.is_empty() {
                bail!("--ca-cert {}: no certificate in the file", ca.display());
            }
            http = http.tls_certs_only(certs);
        }
        let http = http.build()?;
        let token = token.filter(|t| !t.is_empty());
        Ok(Self { base, http, token })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// Whether the jobmanager answers, and as what: `leader` or `standby` (`GET /readyz`,
    /// public: no token needed).
    pub async fn role(&self) -> anyhow::Result<String> {
        let resp = self
            .reach(self.http.get(format!("{}/readyz", self.base)))
            .await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        match text.trim() {
            role @ ("leader" | "standby") => Ok(role.to_string()),
            other => bail!(
                "the jobmanager at {} answered /readyz with {status}: {other}",
                self.base
            ),
        }
    }

    /// Sends a request; the chain of causes of a failure says which: refused, unreachable, or
    /// a certificate not trusted.
    async fn reach(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        req.send().await.map_err(|e| {
            anyhow::Error::new(e).context(format!("cannot reach the jobmanager at {}", self.base))
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = self.reach(req).await?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| anyhow!("reading the jobmanager's answer: {e}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        let error = value["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        match value["details"].as_array() {
            Some(details) if details.len() > 1 => {
                let lines: Vec<String> = details.iter().map(render_detail).collect();
                bail!("rejected ({status}):\n{}", lines.join("\n"))
            }
            _ => bail!("{error} ({status})"),
        }
    }
}

/// One located error of a rejected job, as `file:line:col: field: message`.
fn render_detail(d: &Value) -> String {
    let mut s = d["file"].as_str().unwrap_or("job").to_string();
    if let Some(l) = d["line"].as_u64() {
        s.push_str(&format!(":{l}"));
        if let Some(c) = d["column"].as_u64() {
            s.push_str(&format!(":{c}"));
        }
    }
    if let Some(f) = d["field"].as_str().filter(|f| !f.is_empty()) {
        s.push_str(&format!(": {f}"));
    }
    format!("{s}: {}", d["message"].as_str().unwrap_or_default())
}
