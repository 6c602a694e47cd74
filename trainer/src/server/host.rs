//! The `Host` a request names must be this server's, against DNS rebinding: a web page on
//! another site can make a browser resolve its own name to 127.0.0.1 and send requests to a
//! loopback server as a same-origin page would, reading models and queueing trainings. Such a
//! request still says the attacker's name in `Host`. A server bound to loopback answers only
//! loopback names (`localhost`, `*.localhost`, `127.0.0.1`, `[::1]`) and the `--allowed-host`
//! names; a server bound beyond loopback checks only when `--allowed-host` is given.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Which `Host` names a server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    /// Any.
    Any,
    /// Loopback names, and these (lowercase, without ports).
    Named {
        /// Loopback names count too.
        loopback: bool,
        /// `--allowed-host` names.
        names: Vec<String>,
    },
}

impl HostPolicy {
    /// The policy of a server bound to `bind` with `--allowed-host` names (`*`: any).
    pub fn new(bind: &str, allowed: &[String]) -> Self {
        if allowed.iter().any(|h| h == "*") {
            return Self::Any;
        }
        let loopback = super::is_loopback(bind);
        if !loopback && allowed.is_empty() {
            return Self::Any;
        }
        Self::Named { loopback, names: allowed.iter().map(|h| h.trim().to_ascii_lowercase()).collect() }
    }

    /// Whether a request naming `host` (a `Host` value: name or address, maybe a port) is ours.
    pub fn allows(&self, host: &str) -> bool {
        let Self::Named { loopback, names } = self else { return true };
        let name = host_name(host).to_ascii_lowercase();
        (*loopback && is_loopback_name(&name)) || names.contains(&name)
    }
}

/// The name of a `Host` value without its port (`[::1]:9003` → `::1`).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `localhost`, a name under `.localhost` (RFC 6761 keeps them on loopback) or a loopback address.
fn is_loopback_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    name == "localhost" || name.ends_with(".localhost") || super::is_loopback(name)
}

/// Refuse requests whose `Host` (or HTTP/2 authority) is not this server's. A request without
/// one (HTTP/1.0, in-process tests) passes: browsers always send it.
pub async fn check(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let named = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| req.uri().host());
    match named {
        Some(host) if !state.hosts.allows(host) => ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "this server does not answer for the host `{}` (a guard against DNS rebinding); start it with \
                 --allowed-host NAME to accept that name",
                inference::error::truncate_echo(host)
            ),
        )
        .in_protocol(super::web::protocol_of_path(req.uri().path()))
        .into_response(),
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_servers_answer_loopback_names_and_the_allowed_ones() {
        let p = HostPolicy::new("127.0.0.1", &["models.example.com".into()]);
        for ok in [
            "127.0.0.1:9003",
            "localhost",
            "LOCALHOST:1",
            "app.localhost:9003",
            "[::1]:9003",
            "127.1.2.3",
            "models.example.com",
            "Models.Example.com:443",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in ["attacker.example:9003", "localhost.attacker.example", "127.0.0.1.nip.io", "", "[::2]:1"] {
            assert!(!p.allows(bad), "{bad}");
        }
        assert_eq!(HostPolicy::new("0.0.0.0", &[]), HostPolicy::Any);
        assert!(!HostPolicy::new("0.0.0.0", &["a.example".into()]).allows("localhost"));
        assert_eq!(HostPolicy::new("127.0.0.1", &["*".into()]), HostPolicy::Any);
    }
}
