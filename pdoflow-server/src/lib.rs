//! The HTTP API of pdoflow (`pdoflow-run serve`): the SQL API over HTTP,
//! each request in a transaction of its own as the role its bearer JWT
//! names (the PostgREST way), with long-polls that share one database
//! connection, RFC 9457 problems for every error, an OpenAPI 3.1 document
//! and Prometheus metrics; and a live web dashboard at `/dashboard/`. See
//! docs/http-api.md and docs/dashboard.md.
//!
//! ```no_run
//! # async fn example(connector: pdoflow_server::Connector) -> Result<(), pdoflow_server::ServerError> {
//! let config = pdoflow_server::ServerConfig::default();
//! let server = pdoflow_server::Server::bind(config, connector).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(std::future::pending()).await
//! # }
//! ```

// `Problem` (about 300 bytes: the typed fields of every problem kind) is
// the error of every handler and becomes a response at once; boxing it
// would only add an allocation per error.
#![allow(clippy::result_large_err)]

mod auth;
mod config;
mod dashboard;
mod error;
mod extension;
mod json;
mod long_poll;
mod metrics;
mod openapi;
mod pool;
mod problem;
mod raw_json;
mod routes;
mod schemas;
mod sql_error;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{
    JwtConfig, PublicKey, ServerConfig, DEFAULT_APPLICATION_NAME, DEFAULT_BODY_LIMIT,
    DEFAULT_LISTEN, DEFAULT_MAX_WAIT, DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT,
};
pub use error::ServerError;
pub use pool::{drive, Connected, Connector, Notifications};

/// The OpenAPI document of the API, as served at `/v1/openapi.json`.
pub fn openapi_document() -> serde_json::Value {
    let (_, document) = routes::router().split_for_parts();
    openapi::finish(document)
}

/// A server bound to its address, not serving yet.
pub struct Server {
    listener: TcpListener,
    address: SocketAddr,
    state: Arc<state::AppState>,
    stop: watch::Sender<bool>,
    connector: Connector,
}

impl Server {
    /// Checks the configuration, binds the listening socket and sets up the
    /// pool (which connects on demand: a database that is down makes
    /// `/readyz` and the API answer 503, not the start fail).
    pub async fn bind(config: ServerConfig, connector: Connector) -> Result<Server, ServerError> {
        let auth = auth::Auth::new(&config.jwt, config.anon_role.clone())?;
        let pool = pool::build(connector.clone(), config.pool_size, config.pool_timeout)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    address: config.listen.to_string(),
                    source,
                })?;
        let address = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                address: config.listen.to_string(),
                source,
            })?;
        let (stop, stopping) = watch::channel(false);
        let state = Arc::new(state::AppState {
            config,
            auth,
            pool,
            hub: Arc::new(long_poll::Hub::default()),
            metrics: metrics::HttpMetrics::new(),
            dashboard: dashboard::Dashboard::new().map_err(ServerError::Config)?,
            stopping,
        });
        Ok(Server {
            listener,
            address,
            state,
            stop,
            connector,
        })
    }

    /// The address it listens on (the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` completes, then stops taking connections,
    /// ends the long-polls at once (with the job's state as it is) and lets
    /// the requests in flight finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let hub = tokio::spawn(long_poll::run(
            Arc::clone(&self.state.hub),
            self.connector.clone(),
            self.state.config.service_role.clone(),
            self.state.stopping.clone(),
        ));
        let live = self.state.config.dashboard.then(|| {
            tokio::spawn(dashboard::live::run(
                Arc::clone(&self.state.dashboard.live),
                self.connector.clone(),
                self.state.config.service_role.clone(),
                self.state.stopping.clone(),
            ))
        });
        let app = routes::app(Arc::clone(&self.state));
        tracing::info!(address = %self.address, "pdoflow HTTP API listening");
        let stop = self.stop;
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections, long-polls end now");
                let _ = stop.send(true);
            })
            .await;
        hub.abort();
        if let Some(live) = live {
            live.abort();
        }
        self.state.pool.close();
        served.map_err(ServerError::Serve)
    }
}

/// Binds and serves until `shutdown` completes (see `Server`).
pub async fn serve(
    config: ServerConfig,
    connector: Connector,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::bind(config, connector).await?.run(shutdown).await
}
