//! Why the server could not start or stopped (request errors are problems:
//! see `problem`).

/// An error that stops `serve`.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is unusable (a key that does not parse, say).
    #[error("{0}")]
    Config(String),
    /// The listening socket could not be bound or failed.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    /// Serving connections failed.
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
}
