//! The dashboard's scripts and styles, compiled into the binary and served
//! from it: no CDN, no build step (the vendored libraries and their
//! versions: assets/vendor/README.md). Their paths carry a hash of their
//! content, so browsers may keep them for a year and still never run a
//! stale one after an upgrade.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub struct Asset {
    pub name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

pub const HTMX: &Asset = &Asset {
    name: "htmx-2.0.11.min.js",
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("../../assets/vendor/htmx-2.0.11.min.js"),
};
pub const HTMX_SSE: &Asset = &Asset {
    name: "htmx-ext-sse-2.2.4.js",
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("../../assets/vendor/htmx-ext-sse-2.2.4.js"),
};
pub const UPLOT: &Asset = &Asset {
    name: "uPlot-1.6.32.iife.min.js",
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("../../assets/vendor/uPlot-1.6.32.iife.min.js"),
};
pub const UPLOT_CSS: &Asset = &Asset {
    name: "uPlot-1.6.32.min.css",
    content_type: "text/css; charset=utf-8",
    bytes: include_bytes!("../../assets/vendor/uPlot-1.6.32.min.css"),
};
pub const DASHBOARD_JS: &Asset = &Asset {
    name: "dashboard.js",
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("../../assets/dashboard.js"),
};
pub const DASHBOARD_CSS: &Asset = &Asset {
    name: "dashboard.css",
    content_type: "text/css; charset=utf-8",
    bytes: include_bytes!("../../assets/dashboard.css"),
};

const ALL: [&Asset; 6] = [
    HTMX,
    HTMX_SSE,
    UPLOT,
    UPLOT_CSS,
    DASHBOARD_JS,
    DASHBOARD_CSS,
];

/// The first 16 hex digits of the SHA-256 of every asset, in `ALL`'s order.
static HASHES: LazyLock<Vec<String>> = LazyLock::new(|| {
    ALL.iter()
        .map(|asset| {
            Sha256::digest(asset.bytes)
                .iter()
                .take(8)
                .map(|byte| format!("{byte:02x}"))
                .collect()
        })
        .collect()
});

/// Where a page links `asset`: `/dashboard/assets/<hash>/<name>`.
pub fn path(asset: &Asset) -> String {
    let hash = ALL
        .iter()
        .position(|each| each.name == asset.name)
        .map(|index| HASHES[index].as_str())
        .unwrap_or("0");
    format!("/dashboard/assets/{hash}/{}", asset.name)
}

/// `GET /dashboard/assets/{hash}/{name}`: the asset, whatever the hash (an
/// old page still gets the current file).
pub async fn serve(Path((_hash, name)): Path<(String, String)>) -> Response {
    let Some(asset) = ALL.iter().find(|asset| asset.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut response = asset.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_its_own_hashed_path() {
        let paths: Vec<String> = ALL.iter().map(|asset| path(asset)).collect();
        for (asset, path) in ALL.iter().zip(&paths) {
            assert!(path.ends_with(asset.name), "{path}");
            assert!(!path.contains("/0/"), "{path}");
            assert!(!asset.bytes.is_empty(), "{}", asset.name);
        }
    }
}
