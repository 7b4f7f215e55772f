//! The web UI: static assets compiled into the binary and served on the
//! API's origin, at `/` (the page) and `/ui/…` (scripts and styles).
//!
//! Invariants:
//! - Nothing is fetched from another origin: the Content-Security-Policy
//!   allows `'self'` only, so the UI works offline and a mistake that
//!   reaches out fails loudly in the browser.
//! - The UI holds no privilege of its own: it calls `/api/v1` with the
//!   user's bearer token, so the API's role checks apply unchanged.
//! - Assets carry a content hash as ETag and are revalidated, so a new
//!   binary never serves a stale script.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../ui/", $path)))),*]
    };
}

/// Every asset, by path under `/ui/`.
pub const ASSETS: &[(&str, &str)] = assets![
    "index.html",
    "style.css",
    "js/app.js",
    "js/api.js",
    "js/dom.js",
    "js/pipelines.js",
    "js/pipeline.js",
    "js/run.js",
    "js/table.js",
    "js/lineage.js",
    "js/search.js",
    "js/sql.js",
];

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str, req: &HeaderMap) -> Response {
    let Some((_, body)) = ASSETS.iter().find(|(p, _)| *p == path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(body.as_bytes()))[..16]
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, *body).into_response()
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// The UI's routes: `/` and `/ui/{path}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", axum::routing::get(index))
        .route("/ui/{*path}", axum::routing::get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_embedded_and_local() {
        let page = ASSETS.iter().find(|(p, _)| *p == "index.html").unwrap().1;
        for (path, body) in ASSETS {
            // Modules import each other by absolute /ui/ paths only.
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let target = line.split(['"', '\'']).nth(1).unwrap_or_default();
                let rel = target
                    .strip_prefix("/ui/")
                    .unwrap_or_else(|| panic!("{path}: import '{target}' is not under /ui/"));
                assert!(
                    ASSETS.iter().any(|(p, _)| *p == rel),
                    "{path} imports {target}, which is not embedded"
                );
            }
            assert!(
                !body.contains("http://") && !body.contains("https://") || *path == "js/dom.js",
                "{path} names another origin"
            );
        }
        assert!(page.contains("/ui/js/app.js") && page.contains("/ui/style.css"));
    }
}
