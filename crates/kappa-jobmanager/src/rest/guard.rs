//! What every HTTP request passes before a handler sees it: the bearer token (compared in
//! constant time over digests, so neither its bytes nor its length leak), the Host header
//! (a DNS-rebinding page cannot reach a jobmanager that listens on loopback), the origin of a
//! request that changes something (a page of another site cannot cancel or submit), and the
//! headers that keep the web UI out of other sites' frames and scripts.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;

use super::ApiError;

/// The configured bearer token, kept as its SHA-256 digest.
pub(crate) struct Token([u8; 32]);

impl Token {
    pub(crate) fn new(token: &str) -> Self {
        Self(sha256(token.as_bytes()))
    }

    /// Whether `given` is the token. Both sides are digests of the same length, compared in
    /// constant time: the time taken says nothing about how much of `given` was right, nor
    /// about the token's length.
    fn matches(&self, given: &str) -> bool {
        sha256(given.as_bytes()).ct_eq(&self.0).into()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// Refuses requests without the configured bearer token.
pub(crate) async fn require_token(
    State(token): State<Arc<Token>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| token.matches(g)) {
        return next.run(req).await;
    }
    let why = match given {
        None => {
            "this cluster needs a bearer token: send `Authorization: Bearer <token>` (kappactl: --token or KAPPA_AUTH_TOKEN)"
        }
        Some(_) => "the bearer token is wrong",
    };
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// The host names a request may be addressed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedHosts {
    /// Any: the jobmanager listens on a routable address and its token protects it.
    #[default]
    Any,
    /// Only these (lower case, without port), e.g. loopback names for a jobmanager that
    /// listens on loopback, or the names given with `--allowed-host`.
    Only(Vec<String>),
}

impl AllowedHosts {
    /// Loopback names and the address the jobmanager listens on.
    pub fn loopback(bound: std::net::IpAddr) -> Self {
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "[::1]".to_string(),
        ];
        let own = match bound {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        if !names.contains(&own) {
            names.push(own);
        }
        Self::Only(names)
    }

    fn allows(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(names) => {
                let name = host_name(host).to_ascii_lowercase();
                names.contains(&name)
            }
        }
    }
}

/// `host[:port]` without its port (`[v6]:port` keeps its brackets).
fn host_name(host: &str) -> &str {
    if let Some(end) = host.strip_prefix('[').and_then(|h| h.find(']')) {
        return &host[..end + 2];
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Refuses a request addressed to a host name this jobmanager does not answer to, and a
/// request that changes something sent by a page of another origin (checked with
/// `Sec-Fetch-Site`, else `Origin` against `Host`).
pub(crate) async fn same_origin(
    State(allowed): State<Arc<AllowedHosts>>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    // Browsers always name the host; a request without one comes from some other client.
    let host = headers
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("?"))
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return next.run(req).await;
    };
    if !allowed.allows(host) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this jobmanager does not answer to the host name `{}` (see --allowed-host)",
                host_name(host)
            ),
        )
        .into_response();
    }
    let reads_only = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !reads_only && let Some(why) = cross_origin(headers, host) {
        return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
    }
    next.run(req).await
}

/// Why a request comes from a page of another origin, if it does.
fn cross_origin(headers: &HeaderMap, host: &str) -> Option<String> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(site) = fetch_site
        && !matches!(site, "same-origin" | "none")
    {
        return Some(format!(
            "a request of a {site} page is refused: the API changes jobs only for this jobmanager's own pages and for clients such as kappactl"
        ));
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    if origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host)) {
        return None;
    }
    Some(format!(
        "a request from the page of origin `{}` is refused: the API changes jobs only for this jobmanager's own pages and for clients such as kappactl",
        String::from_utf8_lossy(origin.as_bytes())
    ))
}

/// The UI's pages run only this server's own script and style, in no other site's frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to every answer.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_matches_only_itself() {
        let t = Token::new("s3cret");
        assert!(t.matches("s3cret"));
        for wrong in ["", "s", "s3cre", "s3cret ", "S3cret", "s3cret-and-more"] {
            assert!(!t.matches(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn host_names_lose_their_port_only() {
        assert_eq!(host_name("localhost:8081"), "localhost");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("[::1]:8081"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("10.0.0.5:80"), "10.0.0.5");
    }

    #[test]
    fn loopback_allows_loopback_names_and_its_own_address_only() {
        let v4 = AllowedHosts::loopback("127.0.0.2".parse().unwrap());
        for ok in [
            "localhost:8081",
            "LOCALHOST",
            "127.0.0.1:1",
            "[::1]:8081",
            "127.0.0.2:8081",
        ] {
            assert!(v4.allows(ok), "{ok}");
        }
        for no in [
            "evil.example:8081",
            "localhost.evil.example",
            "",
            "127.0.0.3",
        ] {
            assert!(!v4.allows(no), "{no}");
        }
        assert!(AllowedHosts::Any.allows("anything:1"));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn another_origin_is_refused_and_the_same_or_none_passes() {
        let host = "127.0.0.1:8081";
        assert!(
            cross_origin(&headers(&[]), host).is_none(),
            "kappactl, curl"
        );
        assert!(cross_origin(&headers(&[("origin", "http://127.0.0.1:8081")]), host).is_none());
        assert!(cross_origin(&headers(&[("sec-fetch-site", "same-origin")]), host).is_none());
        let refused = [
            headers(&[("origin", "http://evil.example")]),
            headers(&[("origin", "http://127.0.0.1:9999")]),
            headers(&[("origin", "null")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://evil.example"),
            ]),
        ];
        for h in refused {
            let why = cross_origin(&h, host);
            assert!(why.is_some_and(|w| w.contains("refused")), "{h:?}");
        }
    }
}
