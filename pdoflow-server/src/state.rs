//! What every handler shares.

use std::sync::Arc;

use tokio::sync::watch;

use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::dashboard::Dashboard;
use crate::long_poll::Hub;
use crate::metrics::HttpMetrics;
use crate::pool::Pool;

pub struct AppState {
    pub config: ServerConfig,
    pub auth: Auth,
    pub pool: Pool,
    pub hub: Arc<Hub>,
    pub metrics: HttpMetrics,
    /// The dashboard's CSRF key and live feed.
    pub dashboard: Dashboard,
    /// Turns true when the server begins to shut down: long-polls then
    /// answer at once instead of holding the shutdown up.
    pub stopping: watch::Receiver<bool>,
}
