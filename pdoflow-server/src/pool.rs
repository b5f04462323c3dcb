//! Pooled database connections, and the transaction each request runs in
//! as its role.
//!
//! The pool is deadpool's, around a `Connector` the caller passes in (the
//! CLI's makes connections the way every pdoflow-run connection is made:
//! TLS, lock and statement timeouts, READ COMMITTED). A connection goes back
//! to the pool as it is: every request's settings are `SET LOCAL`
//! (`set_config(..., true)`), so they end with its transaction, and the
//! session's own settings (the timeouts) stay. (deadpool-postgres'
//! `RecyclingMethod::Clean` would `RESET ALL` them away.) A new connection
//! is checked for pdoflow 0.13.0 or later (`extension`) before its first
//! use: without it every request gets a 503 that says so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Metrics, Object, RecycleError, RecycleResult, Timeouts};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Notification, Row, Statement};

use crate::auth::Role;
use crate::error::ServerError;
use crate::extension;
pub use crate::extension::ConnectError;
use crate::problem::{Code, Problem};
use crate::sql_error::{self, Ctx};

/// Makes a new database connection: the server's login, with the session
/// settings it needs (`application_name` included, by which the server's
/// connections can be counted). Build its result with [`drive`].
pub type Connector = Arc<dyn Fn() -> BoxFuture<'static, Result<Connected, String>> + Send + Sync>;

/// The notifications (`LISTEN`) a connection receives.
pub type Notifications = mpsc::UnboundedReceiver<Notification>;

/// A new connection: its client, and what it hears. Pooled connections
/// ignore their notifications; the dashboard's live feed listens on its own.
pub struct Connected {
    pub client: Client,
    pub notifications: Notifications,
}

/// Drives `connection` in a task of its own (it ends when the client is
/// dropped or the connection fails), passing its notifications on.
pub fn drive<S, T>(client: Client, mut connection: tokio_postgres::Connection<S, T>) -> Connected
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, notifications) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages =
            futures_util::stream::poll_fn(move |context| connection.poll_message(context));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    // Nobody listening (a pooled connection): dropped.
                    let _ = sender.send(notification);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "database connection ended");
                    break;
                }
            }
        }
    });
    Connected {
        client,
        notifications,
    }
}

/// A pooled connection, with the statements it prepared.
pub struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// The request's role and claims, for its transaction only.
const SET_ROLE: &str = "SELECT pg_catalog.set_config('role', $1, true), \
                        pg_catalog.set_config('request.jwt.claims', $2, true)";

impl Conn {
    /// `sql` prepared, once per connection.
    async fn statement(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs `sql` (prepared once per connection) with `params`.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.client.query(&statement, params).await
    }
}

/// A connection of the server's own (the long-poll hub's, the dashboard's
/// live feed's): as the service role for the whole session when one is
/// configured, checked for pdoflow 0.13.0 or later.
pub async fn service_connection(
    connector: &Connector,
    service_role: Option<&str>,
) -> Result<Connected, String> {
    let connected = connector().await?;
    if let Some(role) = service_role {
        connected
            .client
            .query("SELECT pg_catalog.set_config('role', $1, false)", &[&role])
            .await
            .map_err(|error| sql_error::describe(&error))?;
    }
    extension::check(&connected.client)
        .await
        .map_err(|error| error.to_string())?;
    Ok(connected)
}

pub struct Manager {
    connector: Connector,
}

impl deadpool::managed::Manager for Manager {
    type Type = Conn;
    type Error = ConnectError;

    async fn create(&self) -> Result<Conn, ConnectError> {
        let client = (self.connector)()
            .await
            .map_err(ConnectError::Connect)?
            .client;
        extension::check(&client).await?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<ConnectError> {
        // Requests end their transactions (or `Session`'s drop rolls them
        // back before the connection returns), so a connection that is still
        // open is ready.
        if conn.client.is_closed() {
            return Err(RecycleError::Message("the connection is closed".into()));
        }
        Ok(())
    }
}

pub type Pool = deadpool::managed::Pool<Manager>;

pub fn build(connector: Connector, size: usize, wait: Duration) -> Result<Pool, ServerError> {
    Pool::builder(Manager { connector })
        .max_size(size.max(1))
        .runtime(deadpool::Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(wait),
            create: Some(wait.max(Duration::from_secs(10))),
            recycle: Some(Duration::from_secs(5)),
        })
        .build()
        .map_err(|error| ServerError::Config(format!("cannot build the connection pool: {error}")))
}

/// A pooled connection, or the 503 that says why there is none.
pub async fn get(pool: &Pool) -> Result<Object<Manager>, Problem> {
    pool.get().await.map_err(|error| match error {
        deadpool::managed::PoolError::Timeout(_) => {
            Problem::unavailable("no database connection became free in time")
        }
        deadpool::managed::PoolError::Backend(ConnectError::Connect(message)) => {
            tracing::warn!("cannot connect to the database: {message}");
            Problem::unavailable("the database cannot be reached")
        }
        // Not a passing trouble: say what to do about it.
        deadpool::managed::PoolError::Backend(error) => {
            tracing::warn!("{error}");
            Problem::unavailable(error.to_string())
        }
        other => Problem::unavailable(format!("no database connection: {other}")),
    })
}

/// One transaction on a pooled connection, as a role. Dropped without
/// `commit`, it is rolled back before the connection is used again.
pub struct Session {
    conn: Option<Object<Manager>>,
    open: bool,
}

impl Session {
    /// Begins a READ COMMITTED transaction as the request's role, with its
    /// claims in `request.jwt.claims` (as PostgREST sets them). A role that
    /// does not exist, or that the login may not switch to, is a 401.
    ///
    /// BEGIN and the switch go out together (tokio-postgres pipelines
    /// requests made at once): one round trip, not two, for every request.
    pub async fn begin(pool: &Pool, role: &Role) -> Result<Session, Problem> {
        let mut conn = get(pool).await?;
        let set_role = conn
            .statement(SET_ROLE)
            .await
            .map_err(|error| sql_error::problem(&error, &Ctx::default()))?;
        let client = &conn.client;
        let params: [&(dyn ToSql + Sync); 2] = [&role.name, &role.claims];
        let (begun, set) = tokio::join!(
            client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
            client.query(&set_role, &params),
        );
        // From here on, dropping the session rolls back whatever began.
        let session = Session {
            conn: Some(conn),
            open: true,
        };
        begun.map_err(|error| sql_error::problem(&error, &Ctx::default()))?;
        set.map_err(|error| role_problem(role, &error))?;
        Ok(session)
    }

    /// Switches the transaction to the request's role (see `begin`).
    pub async fn switch_to(&mut self, role: &Role) -> Result<(), Problem> {
        let set = self.query(SET_ROLE, &[&role.name, &role.claims]).await;
        set.map(|_| ()).map_err(|error| role_problem(role, &error))
    }

    /// Begins a READ COMMITTED transaction as the login, or as `role` (the
    /// service role) when given.
    pub async fn begin_as(pool: &Pool, role: Option<&str>) -> Result<Session, Problem> {
        let conn = get(pool).await?;
        let mut session = Session {
            conn: Some(conn),
            open: false,
        };
        let begin = session
            .conn_mut()?
            .client
            .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await;
        begin.map_err(|error| sql_error::problem(&error, &Ctx::default()))?;
        session.open = true;
        if let Some(role) = role {
            session
                .query("SELECT pg_catalog.set_config('role', $1, true)", &[&role])
                .await
                .map_err(|error| {
                    Problem::internal(&format!(
                        "cannot switch to the service role {role:?}: {}",
                        sql_error::describe(&error)
                    ))
                })?;
        }
        Ok(session)
    }

    fn conn_mut(&mut self) -> Result<&mut Conn, Problem> {
        match self.conn.as_mut() {
            Some(conn) => Ok(conn),
            None => Err(Problem::internal("a session used after it ended")),
        }
    }

    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        match self.conn.as_mut() {
            Some(conn) => conn.query(sql, params).await,
            // Unreachable: the connection leaves only in commit and drop.
            None => Ok(Vec::new()),
        }
    }

    /// `query`, with errors as problems read in `ctx`.
    pub async fn rows(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        ctx: &Ctx,
    ) -> Result<Vec<Row>, Problem> {
        self.query(sql, params)
            .await
            .map_err(|error| sql_error::problem(&error, ctx))
    }

    /// The first row of `rows`, if any.
    pub async fn row(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        ctx: &Ctx,
    ) -> Result<Option<Row>, Problem> {
        Ok(self.rows(sql, params, ctx).await?.into_iter().next())
    }

    /// A request whose whole work is one statement: BEGIN as `role`, the
    /// statement, COMMIT, in two round trips (`begin`, `rows_and_commit`).
    pub async fn run(
        pool: &Pool,
        role: &Role,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        ctx: &Ctx,
    ) -> Result<Vec<Row>, Problem> {
        Session::begin(pool, role)
            .await?
            .rows_and_commit(sql, params, ctx)
            .await
    }

    /// `rows_and_commit`'s first row.
    pub async fn row_and_commit(
        self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        ctx: &Ctx,
    ) -> Result<Option<Row>, Problem> {
        Ok(self
            .rows_and_commit(sql, params, ctx)
            .await?
            .into_iter()
            .next())
    }

    /// `rows`, then COMMIT, sent together: one round trip for a request's
    /// last statement and its commit. When the statement fails, its
    /// transaction is aborted and the COMMIT rolls it back (PostgreSQL
    /// answers ROLLBACK), and the statement's problem is returned.
    pub async fn rows_and_commit(
        mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        ctx: &Ctx,
    ) -> Result<Vec<Row>, Problem> {
        let conn = self.conn_mut()?;
        let statement = conn
            .statement(sql)
            .await
            .map_err(|error| sql_error::problem(&error, ctx))?;
        let client = &conn.client;
        let (rows, committed) = tokio::join!(
            client.query(&statement, params),
            client.batch_execute("COMMIT")
        );
        committed.map_err(|error| sql_error::problem(&error, &Ctx::default()))?;
        self.open = false;
        rows.map_err(|error| sql_error::problem(&error, ctx))
    }

    pub async fn commit(mut self) -> Result<(), Problem> {
        let conn = self.conn_mut()?;
        let done = conn.client.batch_execute("COMMIT").await;
        done.map_err(|error| sql_error::problem(&error, &Ctx::default()))?;
        self.open = false;
        Ok(())
    }
}

/// The problem for a failed switch to `role`: a role that does not exist,
/// or that the login may not switch to, is the token's fault (401).
fn role_problem(role: &Role, error: &tokio_postgres::Error) -> Problem {
    let code = error.code().map(|code| code.code().to_owned());
    match code.as_deref() {
        Some("22023") | Some("42501") | Some("42704") => Problem {
            role: Some(role.name.clone()),
            www_authenticate: Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"role {} cannot be used\"",
                role.name.replace(['"', '\\'], "'")
            )),
            ..Problem::new(
                Code::Unauthorized,
                format!(
                    "the token's role {:?} does not exist or the server may not switch to it",
                    role.name
                ),
            )
        },
        _ => sql_error::problem(error, &Ctx::default()),
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if !self.open {
            return;
        }
        // The connection goes back to the pool once ROLLBACK is done (a
        // query of the abandoned request may still be in flight before it);
        // one that cannot roll back is closed instead.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = conn.client.batch_execute("ROLLBACK").await {
                        tracing::debug!(
                            "dropping a connection that could not roll back: {}",
                            sql_error::describe(&error)
                        );
                        drop(Object::take(conn));
                    }
                });
            }
            Err(_) => drop(Object::take(conn)),
        }
    }
}
