//! The HTTP API under test: a `pdoflow-server` started in-process on
//! 127.0.0.1:0 against a test database, roles for its tokens, tokens, and
//! a client that speaks to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pdoflow_server::{Connector, ServerConfig};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::TestDatabase;

/// The HS256 secret of the test servers.
pub const SECRET: &[u8] = b"pdoflow-test-secret-0123456789abcdef";

/// A test's roles (cluster-wide, so named after the test): a login the
/// server connects as, member of a producer, a worker and an admin role,
/// and of nothing else.
pub struct Roles {
    pub login: String,
    pub producer: String,
    pub worker: String,
    pub admin: String,
    /// A role that exists but that the login may not switch to.
    pub stranger: String,
}

impl Roles {
    /// Creates them if need be (they outlive the test database).
    pub async fn create(database: &TestDatabase, label: &str) -> Roles {
        let name = |kind: &str| format!("http_{label}_{kind}");
        let roles = Roles {
            login: name("login"),
            producer: name("producer"),
            worker: name("worker"),
            admin: name("admin"),
            stranger: name("stranger"),
        };
        let client = database.connect().await;
        let statement = format!(
            "DO $$
             DECLARE r text;
             BEGIN
                 FOREACH r IN ARRAY ARRAY['{login}', '{producer}', '{worker}', '{admin}', '{stranger}'] LOOP
                     IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
                         EXECUTE format('CREATE ROLE %I NOLOGIN', r);
                     END IF;
                 END LOOP;
             END $$;
             ALTER ROLE {login} LOGIN;
             GRANT pdoflow_producer TO {producer};
             GRANT pdoflow_worker TO {worker};
             GRANT pdoflow_admin TO {admin};
             GRANT pdoflow_producer TO {stranger};
             GRANT {producer}, {worker}, {admin} TO {login};",
            login = roles.login,
            producer = roles.producer,
            worker = roles.worker,
            admin = roles.admin,
            stranger = roles.stranger,
        );
        client
            .batch_execute(&statement)
            .await
            .unwrap_or_else(|error| panic!("creating the roles: {}", crate::describe(&error)));
        roles
    }
}

/// A token for `role`, valid for an hour.
pub fn token(role: &str) -> String {
    token_with(json!({"role": role, "exp": now() + 3600}), SECRET)
}

/// A token with these claims, signed with `secret` (HS256).
pub fn token_with(claims: Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret).expect("an HS256 key"),
    )
    .expect("encode a JWT")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// A server running in this process.
pub struct TestServer {
    pub address: SocketAddr,
    pub roles: Roles,
    /// The `application_name` of its connections.
    pub application_name: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// A connector that logs in as `login` to `database`, as pdoflow-run's
/// connections do (READ COMMITTED), named `application_name`.
pub fn connector(database: &TestDatabase, login: &str, application_name: &str) -> Connector {
    let mut config: tokio_postgres::Config = database.url().parse().expect("the test URL");
    config.user(login);
    config.application_name(application_name);
    Arc::new(move || {
        let config = config.clone();
        Box::pin(async move {
            let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
            let connected = pdoflow_server::drive(client, connection);
            connected
                .client
                .batch_execute(
                    "SET default_transaction_isolation = 'read committed'; \
                     SET statement_timeout = '1min'",
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok(connected)
        })
    })
}

impl TestServer {
    /// Starts a server for `database`, its roles named after `label`, with
    /// the HS256 secret and `tweak`'s changes to the defaults.
    pub async fn start(
        database: &TestDatabase,
        label: &str,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let roles = Roles::create(database, label).await;
        let application_name = format!("pdoflow-http-{label}");
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("an address"),
            ..ServerConfig::default()
        };
        config.jwt.secret = Some(SECRET.to_vec());
        config.max_wait = Duration::from_secs(30);
        tweak(&mut config);
        let connector = connector(database, &roles.login, &application_name);
        let server = pdoflow_server::Server::bind(config, connector)
            .await
            .expect("bind the server");
        let address = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(error) = server.run(shutdown).await {
                panic!("the server failed: {error}");
            }
        });
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(64)
            .build()
            .expect("an HTTP client");
        TestServer {
            address,
            roles,
            application_name,
            client,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A request with `token` (None: without one).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request`; returns the status, the headers and the body as
    /// JSON (Null when empty or not JSON).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
            text,
        }
    }

    /// GET `path` as `role`.
    pub async fn get(&self, path: &str, role: &str) -> Response {
        self.send(self.request(reqwest::Method::GET, path, Some(&token(role))))
            .await
    }

    /// POST `body` to `path` as `role`.
    pub async fn post(&self, path: &str, role: &str, body: Value) -> Response {
        self.send(
            self.request(reqwest::Method::POST, path, Some(&token(role)))
                .json(&body),
        )
        .await
    }

    /// PUT `body` to `path` as `role`.
    pub async fn put(&self, path: &str, role: &str, body: Value) -> Response {
        self.send(
            self.request(reqwest::Method::PUT, path, Some(&token(role)))
                .json(&body),
        )
        .await
    }

    /// DELETE `path` as `role`.
    pub async fn delete(&self, path: &str, role: &str) -> Response {
        self.send(self.request(reqwest::Method::DELETE, path, Some(&token(role))))
            .await
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Response {
    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    /// Fails the test unless this is a problem of `status` and `code`.
    pub fn assert_problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header("content-type"),
            "application/problem+json",
            "{}",
            self.text
        );
        assert_eq!(self.body["code"], code, "{}", self.text);
        assert_eq!(
            self.body["type"],
            format!("urn:pdoflow:problem:{code}"),
            "{}",
            self.text
        );
        assert_eq!(self.body["status"], status, "{}", self.text);
        assert!(self.body["title"].is_string(), "{}", self.text);
        assert!(self.body["detail"].is_string(), "{}", self.text);
        assert!(self.body["instance"].is_string(), "{}", self.text);
        &self.body
    }
}
