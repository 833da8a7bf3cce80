//! The operator's dashboard at `/ui`: a static shell of plain HTML and ES modules, compiled into
//! the binary. The shell itself is public (it holds no data); every figure it shows comes from
//! an admin-scoped API call made with the key the operator types in (docs/operations.md).

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};

use crate::Shared;

pub const PATH: &str = "/ui";
pub const ASSET_PATH: &str = "/ui/{asset}";

/// Only our own files, no inline script or style, no framing, no forms posting elsewhere: a
/// page that handles an admin key must not run anything it did not ship with.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// (name, content type, body): the whole dashboard.
const ASSETS: [(&str, &str, &str); 8] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/api.js"),
    ),
    (
        "metrics.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/metrics.js"),
    ),
    (
        "entity.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/entity.js"),
    ),
    (
        "dlq.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/dlq.js"),
    ),
    (
        "reminders.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/reminders.js"),
    ),
];

pub fn routes() -> Vec<(&'static str, MethodRouter<Shared>)> {
    vec![
        (PATH, get(|| async { asset("index.html") })),
        (
            ASSET_PATH,
            get(|Path(name): Path<String>| async move { asset(&name) }),
        ),
    ]
}

fn asset(name: &str) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, hardened(), "no such file").into_response();
    };
    let mut headers = hardened();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (headers, *body).into_response()
}

fn hardened() -> HeaderMap {
    HeaderMap::from_iter([
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // A new binary ships new files: never serve a stale module beside a fresh shell.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_shell_loads_is_served() {
        let all: String = ASSETS.iter().map(|(_, _, body)| *body).collect();
        for reference in all.split(['"', '\'']).filter(|s| s.starts_with("/ui/")) {
            let name = &reference["/ui/".len()..];
            assert!(
                ASSETS.iter().any(|(n, _, _)| *n == name),
                "{reference} is referenced but not embedded"
            );
        }
    }

    #[test]
    fn no_asset_relies_on_inline_code_the_policy_blocks() {
        let html = ASSETS[0].2;
        assert!(!html.contains("<script>") && !html.contains(" style="));
        assert!(!["onclick=", "onsubmit=", "onload="]
            .iter()
            .any(|h| html.contains(h)));
        for (name, _, body) in ASSETS {
            assert!(
                !body.contains("innerHTML"),
                "{name} builds DOM from text only"
            );
        }
    }
}
