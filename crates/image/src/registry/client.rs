//! The HTTP side: base URL, auth challenges (Bearer token or Basic), retries of a request
//! after a 401 with fresh credentials.

use std::sync::Mutex;

use base64::Engine;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use super::{Credentials, RegistryError};

/// Connection options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// Credentials for Basic auth or the token endpoint.
    pub credentials: Option<Credentials>,
    /// Blobs larger than this are pushed in chunks of this size.
    pub chunk_size: u64,
    /// Concurrent layer downloads.
    pub parallel: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            credentials: None,
            chunk_size: 16 << 20,
            parallel: 3,
        }
    }
}

/// A client for one repository on one registry.
#[derive(Debug)]
pub struct Client {
    pub(crate) http: reqwest::blocking::Client,
    pub(crate) registry: String,
    pub(crate) base: String,
    pub(crate) repo: String,
    pub(crate) opts: ClientOptions,
    auth: Mutex<Option<HeaderValue>>,
}

/// The `Bearer realm=…,service=…,scope=…` parameters of a challenge.
pub fn parse_challenge(h: &str) -> Option<(String, Vec<(String, String)>)> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, tail) = s.split_once('=')?;
        let tail = tail.trim_start();
        let (v, after) = if let Some(t) = tail.strip_prefix('"') {
            let end = t.find('"')?;
            (&t[..end], &t[end + 1..])
        } else {
            tail.split_once(',').unwrap_or((tail, ""))
        };
        params.push((k.trim().to_ascii_lowercase(), v.to_string()));
        s = after.trim_start().trim_start_matches(',').trim_start();
    }
    Some((scheme.to_ascii_lowercase(), params))
}

impl Client {
    /// A client for `repo` on `registry` (host[:port]).
    pub fn new(registry: &str, repo: &str, opts: ClientOptions) -> Result<Client, RegistryError> {
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("corral/", env!("CARGO_PKG_VERSION")))
            .timeout(None)
            .connect_timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| RegistryError::Http {
                url: registry.to_string(),
                source: e,
            })?;
        let scheme = if opts.insecure { "http" } else { "https" };
        Ok(Client {
            http,
            registry: registry.to_string(),
            base: format!("{scheme}://{registry}"),
            repo: repo.to_string(),
            opts,
            auth: Mutex::new(None),
        })
    }

    /// `/v2/<repo>/<path>` as a full URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{}", self.base, self.repo, path)
    }

    /// Resolves a Location header (absolute or relative) against the registry.
    pub fn absolute(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("{}{}", self.base, loc)
        }
    }

    /// `GET /v2/`: checks that the registry answers and the credentials work.
    pub fn ping(&self) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base);
        let r = self.send("GET", &url, "", &|c| c.get(&url))?;
        expect(r, &[StatusCode::OK], "GET", &url).map(drop)
    }

    /// Sends a request (built by `make`, so it can be repeated), answering one auth challenge.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        actions: &str,
        make: &dyn Fn(&reqwest::blocking::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let with_auth = |rb: RequestBuilder| match self.auth.lock().expect("auth lock").clone() {
            Some(h) => rb.header(AUTHORIZATION, h),
            None => rb,
        };
        let http_err = |e| RegistryError::Http {
            url: url.to_string(),
            source: e,
        };
        let r = with_auth(make(&self.http)).send().map_err(http_err)?;
        if r.status() != StatusCode::UNAUTHORIZED {
            return Ok(r);
        }
        let challenge = r
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let _ = method;
        self.authenticate(&challenge, actions)?;
        with_auth(make(&self.http)).send().map_err(http_err)
    }

    fn authenticate(&self, challenge: &str, actions: &str) -> Result<(), RegistryError> {
        let fail = |m: String| RegistryError::Auth {
            registry: self.registry.clone(),
            message: m,
        };
        let (scheme, params) = parse_challenge(challenge)
            .ok_or_else(|| fail(format!("unparsable challenge {challenge:?}")))?;
        let basic = self.opts.credentials.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password))
            )
        });
        let header = match scheme.as_str() {
            "basic" => basic.ok_or_else(|| {
                fail("the registry wants a user name and password (corral image login)".into())
            })?,
            "bearer" => {
                let get = |k: &str| {
                    params
                        .iter()
                        .find(|(pk, _)| pk == k)
                        .map(|(_, v)| v.clone())
                };
                let realm =
                    get("realm").ok_or_else(|| fail("Bearer challenge without realm".into()))?;
                let mut q: Vec<(String, String)> = Vec::new();
                if let Some(s) = get("service") {
                    q.push(("service".into(), s));
                }
                let scope = get("scope").unwrap_or_else(|| {
                    format!(
                        "repository:{}:{}",
                        self.repo,
                        if actions.is_empty() { "pull" } else { actions }
                    )
                });
                q.push(("scope".into(), scope));
                let mut rb = self.http.get(&realm).query(&q);
                if let Some(b) = &basic {
                    rb = rb.header(AUTHORIZATION, b);
                }
                let r = rb.send().map_err(|e| RegistryError::Http {
                    url: realm.clone(),
                    source: e,
                })?;
                if !r.status().is_success() {
                    return Err(fail(format!(
                        "token endpoint {realm} answered HTTP {}",
                        r.status().as_u16()
                    )));
                }
                let v: serde_json::Value = r.json().map_err(|e| RegistryError::Http {
                    url: realm.clone(),
                    source: e,
                })?;
                let t = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| fail("token endpoint returned no token".into()))?;
                format!("Bearer {t}")
            }
            other => return Err(fail(format!("unsupported auth scheme {other:?}"))),
        };
        *self.auth.lock().expect("auth lock") =
            Some(HeaderValue::from_str(&header).map_err(|_| fail("bad token".into()))?);
        Ok(())
    }
}

/// Turns an unexpected status into an error carrying the registry's message.
pub(crate) fn expect(
    r: Response,
    ok: &[StatusCode],
    method: &str,
    url: &str,
) -> Result<Response, RegistryError> {
    if ok.contains(&r.status()) {
        return Ok(r);
    }
    let status = r.status().as_u16();
    let body: String = r.text().unwrap_or_default().chars().take(400).collect();
    Err(RegistryError::Status {
        method: method.to_string(),
        url: url.to_string(),
        status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let (s, p) = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#).unwrap();
        assert_eq!(s, "bearer");
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[2], ("scope".into(), "repository:a/b:pull".into()));
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!((s.as_str(), p.len()), ("basic", 1));
    }
}
