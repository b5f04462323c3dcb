//! What the server is started with. The command line (`pdoflow-run serve`,
//! in pdoflow-client) fills a `ServerConfig` from flags, the environment and
//! db.conf; tests build one directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server listens: `--listen`, `PDOFLOW_LISTEN`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The longest `Prefer: wait=N` honoured: `--max-wait`.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);
/// Pooled database connections: `--pool-size`.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long a request waits for a pooled connection before it gets a 503:
/// `--pool-timeout`.
pub const DEFAULT_POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request body: `--max-body`.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// The `application_name` of the server's connections, by which they can be
/// counted in `pg_stat_activity`.
pub const DEFAULT_APPLICATION_NAME: &str = "pdoflow-server";

/// Everything the server needs besides its database connections.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The address to listen on (port 0: any free port; see `Server::local_addr`).
    pub listen: SocketAddr,
    pub jwt: JwtConfig,
    /// The role of requests without a token (PostgREST's `db-anon-role`);
    /// `None`: such requests get 401.
    pub anon_role: Option<String>,
    /// The cap on `Prefer: wait=N` (and on a claim's `wait`).
    pub max_wait: Duration,
    /// Pooled connections (the long-poll hub has one more of its own).
    pub pool_size: usize,
    /// How long a request waits for a pooled connection (then 503).
    pub pool_timeout: Duration,
    /// The largest request body, in bytes (larger: 413).
    pub body_limit: usize,
    /// The role the server's own queries run as (the long-poll hub, the
    /// dashboard's live feed and `/metrics`), with `SET ROLE`; `None`: the
    /// login's own privileges. The hub needs `pdoflow_producer`, `/metrics`
    /// and the live feed's count of workers `pdoflow_admin` (to read the
    /// workers registry).
    pub service_role: Option<String>,
    /// Whether to serve the web dashboard (`/dashboard/`, `/api/stats`,
    /// `/api/jobs`) and run its live feed (one more connection).
    pub dashboard: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            jwt: JwtConfig::default(),
            anon_role: None,
            max_wait: DEFAULT_MAX_WAIT,
            pool_size: DEFAULT_POOL_SIZE,
            pool_timeout: DEFAULT_POOL_TIMEOUT,
            body_limit: DEFAULT_BODY_LIMIT,
            service_role: None,
            dashboard: true,
        }
    }
}

/// How bearer tokens are checked (see `auth`).
#[derive(Clone, Debug, Default)]
pub struct JwtConfig {
    /// The HS256 secret.
    pub secret: Option<Vec<u8>>,
    /// A PEM public key: RSA (RS256) or EC P-256 (ES256).
    pub public_key: Option<PublicKey>,
    /// When set, a token's `aud` must name it.
    pub audience: Option<String>,
}

/// A public key for RS256 or ES256 tokens, as PEM text or a file holding it.
#[derive(Clone, Debug)]
pub enum PublicKey {
    Pem(Vec<u8>),
    File(PathBuf),
}
