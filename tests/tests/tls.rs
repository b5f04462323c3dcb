//! TLS as libpq does it, against a throwaway cluster of this test's own
//! with `ssl = on`, a CA and server certificate made here (for `localhost`
//! only, so that host 127.0.0.1 is a name the certificate lacks), a second,
//! unrelated CA, and a `pg_hba.conf` of `hostssl` lines only: a plain
//! connection is refused. Checked through the library and, for what a user
//! sees, through the command line (`test-worker`, which is `pdoflow-run`'s):
//! each failure is one line on stderr that says why.
//!
//! Needs what the other integration tests need (`make test`): root, the
//! postgres user, the PostgreSQL under test and pdoflow installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pdoflow_client::config::ConnectionSettings;
use pdoflow_client::Client;
use pdoflow_tests::own_cluster::{as_postgres, free_port, initdb, pg_program, pg_root, succeed};

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");
/// The TLS environment variables of libpq, kept away from what runs here
/// unless a check sets them.
const TLS_VARIABLES: [&str; 5] = [
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLSNI",
];

/// A certificate authority made for the test.
struct Authority {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let certificate = params.self_signed(&key).expect("a CA certificate");
        Authority {
            pem: certificate.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate and its key (PEM) for `names` (`None`: a client
    /// certificate for user `client`).
    fn issue(&self, names: &[&str], client: Option<&str>) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
        .expect("certificate params");
        let common_name = client.or(names.first().copied()).unwrap_or("nobody");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![match client {
            Some(_) => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            None => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        }];
        let certificate = params.signed_by(&key, &self.issuer).expect("a certificate");
        (certificate.pem(), key.serialize_pem())
    }
}

/// The files the clients use.
struct Files {
    dir: PathBuf,
    ca: PathBuf,
    wrong_ca: PathBuf,
    client_certificate: PathBuf,
    client_key: PathBuf,
    /// A home directory without `~/.postgresql`, for commands that must
    /// not pick up the real one.
    empty_home: PathBuf,
}

/// The throwaway cluster: stopped and removed when dropped, also when a
/// check fails.
struct TlsCluster {
    data: PathBuf,
    port: u16,
    files: Files,
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = as_postgres(
            &pg_program("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_dir_all(&self.files.dir);
    }
}

impl TlsCluster {
    fn start() -> TlsCluster {
        // As every integration test: refuse to run outside `make test`.
        assert!(
            std::env::var(pdoflow_tests::URL_VARIABLE).is_ok(),
            "{} is not set: run the integration tests with `make test`",
            pdoflow_tests::URL_VARIABLE
        );
        let port = free_port();
        let data = pg_root().join(format!("tls-test-{}", std::process::id()));
        let files_dir =
            std::env::temp_dir().join(format!("pdoflow-tls-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&files_dir);
        std::fs::create_dir_all(files_dir.join("home")).expect("a directory for the certificates");
        let authority = Authority::new("pdoflow test CA");
        let stranger = Authority::new("some other CA");
        let (server_certificate, server_key) = authority.issue(&["localhost"], None);
        let (client_certificate, client_key) = authority.issue(&[], Some("tls_cert_user"));
        let files = Files {
            ca: files_dir.join("ca.crt"),
            wrong_ca: files_dir.join("wrong-ca.crt"),
            client_certificate: files_dir.join("client.crt"),
            client_key: files_dir.join("client.key"),
            empty_home: files_dir.join("home"),
            dir: files_dir,
        };
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        };
        write(&files.ca, &authority.pem);
        write(&files.wrong_ca, &stranger.pem);
        write(&files.client_certificate, &client_certificate);
        write(&files.client_key, &client_key);
        set_mode(&files.client_key, 0o600);

        let cluster = TlsCluster { data, port, files };
        let data = cluster.data.display().to_string();
        let _ = std::fs::remove_dir_all(&cluster.data);
        initdb(&cluster.data);
        // Written as root into postgres's directory, then handed over: the
        // server refuses a key others can read.
        let server_file = |name: &str, text: &str, mode: u32| {
            let path = cluster.data.join(name);
            write(&path, text);
            set_mode(&path, mode);
            succeed(
                "chown",
                Command::new("chown")
                    .args(["postgres:postgres", &path.display().to_string()])
                    .output()
                    .expect("run chown"),
            );
        };
        server_file("server.crt", &server_certificate, 0o644);
        server_file("server.key", &server_key, 0o600);
        server_file("ca.crt", &authority.pem, 0o644);
        server_file(
            "pg_hba.conf",
            "# TLS only: a plain connection matches no line.\n\
             hostssl all tls_cert_user 127.0.0.1/32 cert\n\
             hostssl all all 127.0.0.1/32 trust\n",
            0o600,
        );
        let mut conf = std::fs::read_to_string(cluster.data.join("postgresql.conf"))
            .expect("read postgresql.conf");
        conf.push_str(
            "\n# --- pdoflow TLS test ---\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\n\
             ssl = on\n\
             ssl_cert_file = 'server.crt'\n\
             ssl_key_file = 'server.key'\n\
             ssl_ca_file = 'ca.crt'\n",
        );
        server_file("postgresql.conf", &conf, 0o600);
        let log = cluster.data.join("server.log").display().to_string();
        let started = as_postgres(
            &pg_program("pg_ctl"),
            &[
                "-D",
                &data,
                "-l",
                &log,
                "-o",
                &format!("-p {}", cluster.port),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        if !started.status.success() {
            let log = std::fs::read_to_string(cluster.data.join("server.log")).unwrap_or_default();
            panic!("the TLS cluster did not start: {log}");
        }
        cluster
    }

    fn url(&self, host: &str, user: &str, query: &str) -> String {
        format!("postgresql://{user}@{host}:{}/postgres{query}", self.port)
    }

    /// `test-worker` (pdoflow-run's command line) with `args`, without
    /// libpq's TLS variables and with an empty home, plus `env`.
    fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(WORKER);
        for variable in
            TLS_VARIABLES
                .iter()
                .chain(&["PDOFLOW_DATABASE_URL", "DATABASE_URL", "PDOFLOW_CONFIG"])
        {
            command.env_remove(variable);
        }
        command
            .env("HOME", &self.files.empty_home)
            .env("XDG_CONFIG_HOME", self.files.empty_home.join(".config"))
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null());
        command.output().expect("run test-worker")
    }

    /// Runs `args`, which must fail with exit code 1 and exactly one line on
    /// stderr that contains each of `expected`.
    fn fails(&self, args: &[&str], env: &[(&str, &str)], expected: &[&str]) -> String {
        let output = self.cli(args, env);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: not one line: {stderr}"
        );
        for text in expected {
            assert!(stderr.contains(text), "{args:?}: {text:?} not in {stderr}");
        }
        stderr
    }

    fn works(&self, args: &[&str], env: &[(&str, &str)]) {
        let output = self.cli(args, env);
        assert!(
            output.status.success(),
            "{args:?} {env:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|error| panic!("chmod {}: {error}", path.display()));
}

/// Connects through the library with `url`.
async fn connect(url: &str) -> pdoflow_client::Result<Client> {
    let settings = ConnectionSettings::from_url(url, "test")?;
    Client::connect_with_settings(&settings).await
}

/// Whether the connection is encrypted, as the server sees it.
async fn encrypted(client: &Client) -> bool {
    client
        .postgres()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("read pg_stat_ssl")
        .get(0)
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_like_libpq() {
    for variable in TLS_VARIABLES {
        assert!(
            std::env::var_os(variable).is_none(),
            "{variable} is set in the test's environment: unset it, the checks decide it"
        );
    }
    let cluster = tokio::task::spawn_blocking(TlsCluster::start)
        .await
        .expect("start the TLS cluster");
    // The library looks for libpq's files in ~/.postgresql: not in this
    // machine's. The only test of this program, so nothing else reads the
    // environment meanwhile.
    std::env::set_var("HOME", &cluster.files.empty_home);
    let ca = path(&cluster.files.ca);
    let wrong_ca = path(&cluster.files.wrong_ca);

    // The library. The server refuses plain connections...
    let error = connect(&cluster.url("127.0.0.1", "postgres", "?sslmode=disable"))
        .await
        .err()
        .expect("sslmode=disable is refused")
        .to_string();
    assert!(
        error.contains("no pg_hba.conf entry") && error.contains("no encryption"),
        "{error}"
    );
    // ...and takes encrypted ones, checked or not.
    for query in [
        "?sslmode=require".to_owned(),
        "?sslmode=prefer".to_owned(),
        String::new(),
        "?sslmode=allow".to_owned(),
        format!("?sslmode=verify-ca&sslrootcert={ca}"),
        format!("?sslmode=require&sslrootcert={ca}"),
    ] {
        for host in ["localhost", "127.0.0.1"] {
            let url = cluster.url(host, "postgres", &query);
            let client = connect(&url)
                .await
                .unwrap_or_else(|error| panic!("{url}: {error}"));
            assert!(encrypted(&client).await, "{url}");
        }
    }
    let client = connect(&cluster.url(
        "localhost",
        "postgres",
        &format!("?sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .expect("verify-full with the right CA and host");
    assert!(encrypted(&client).await);
    // pdoflow, for the command line's `status` below.
    client
        .postgres()
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pdoflow;
             CREATE ROLE tls_cert_user LOGIN SUPERUSER;",
        )
        .await
        .expect("create pdoflow and the certificate user");
    // The key=value form says the same.
    let client = connect(&format!(
        "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert='{ca}'",
        cluster.port
    ))
    .await
    .expect("verify-full, key=value form");
    assert!(encrypted(&client).await);

    // What is not trusted fails, and says why.
    for (query, host, expected) in [
        (
            format!("?sslmode=verify-full&sslrootcert={wrong_ca}"),
            "localhost",
            "TLS: the server's certificate is not trusted: invalid peer certificate: UnknownIssuer",
        ),
        (
            format!("?sslmode=verify-ca&sslrootcert={wrong_ca}"),
            "127.0.0.1",
            "TLS: the server's certificate is not trusted",
        ),
        // require with a root certificate checks the chain, as libpq's does.
        (
            format!("?sslmode=require&sslrootcert={wrong_ca}"),
            "localhost",
            "TLS: the server's certificate is not trusted",
        ),
        (
            format!("?sslmode=verify-full&sslrootcert={ca}"),
            "127.0.0.1",
            "TLS: the server's certificate is not valid for host \"127.0.0.1\" (it is for localhost)",
        ),
    ] {
        let url = cluster.url(host, "postgres", &query);
        let error = connect(&url)
            .await
            .err()
            .unwrap_or_else(|| panic!("{url}: connected"))
            .to_string();
        assert!(error.starts_with(expected), "{url}: {error}");
    }
    // A name the certificate lacks, reached by address.
    let error = connect(&format!(
        "host=db.invalid hostaddr=127.0.0.1 port={} user=postgres sslmode=verify-full sslrootcert={ca}",
        cluster.port
    ))
    .await
    .err()
    .expect("verify-full for another name")
    .to_string();
    assert!(
        error.starts_with("TLS: the server's certificate is not valid for host \"db.invalid\""),
        "{error}"
    );

    // A client certificate, for `cert` authentication.
    let certificate = path(&cluster.files.client_certificate);
    let key = path(&cluster.files.client_key);
    let client = connect(&cluster.url(
        "localhost",
        "tls_cert_user",
        &format!("?sslmode=verify-full&sslrootcert={ca}&sslcert={certificate}&sslkey={key}"),
    ))
    .await
    .expect("connect with a client certificate");
    assert!(encrypted(&client).await);
    let error = connect(&cluster.url("localhost", "tls_cert_user", "?sslmode=require"))
        .await
        .err()
        .expect("cert authentication without a certificate")
        .to_string();
    assert!(error.contains("SQLSTATE 28000"), "{error}");

    // The command line: one line, with the reason.
    let url = |host: &str, query: &str| cluster.url(host, "postgres", query);
    let stderr = cluster.fails(
        &[
            "--database-url",
            &url(
                "localhost",
                &format!("?sslmode=verify-full&sslrootcert={wrong_ca}"),
            ),
            "status",
        ],
        &[],
        &[],
    );
    assert_eq!(
        stderr.trim_end(),
        "pdoflow-run: cannot connect to the database (--database-url): TLS: the server's \
         certificate is not trusted: invalid peer certificate: UnknownIssuer"
    );
    cluster.fails(
        &["--database-url", &url("127.0.0.1", &format!("?sslmode=verify-full&sslrootcert={ca}")), "status"],
        &[],
        &["pdoflow-run: cannot connect to the database (--database-url): TLS: the server's certificate is not valid for host \"127.0.0.1\""],
    );
    cluster.fails(
        &[
            "--database-url",
            &url("127.0.0.1", "?sslmode=disable"),
            "status",
        ],
        &[],
        &[
            "pdoflow-run: cannot connect to the database (--database-url): ",
            "no pg_hba.conf entry",
        ],
    );
    // The worker too (its first connection fails the command).
    cluster.fails(
        &["--database-url", &url("localhost", &format!("?sslmode=verify-full&sslrootcert={wrong_ca}")), "worker", "--burst"],
        &[],
        &["pdoflow-run: cannot connect to the database (--database-url): TLS: the server's certificate is not trusted"],
    );
    // Files that are not there are named before anything is tried.
    cluster.fails(
        &["--database-url", &url("localhost", "?sslmode=verify-full&sslrootcert=/no/such/ca.crt"), "status"],
        &[],
        &["pdoflow-run: --database-url: sslrootcert \"/no/such/ca.crt\": No such file or directory"],
    );
    cluster.fails(
        &[
            "--database-url",
            &url("localhost", "?sslmode=verify-full"),
            "status",
        ],
        &[],
        &[
            "sslmode=verify-full: root certificate file",
            "does not exist",
        ],
    );
    cluster.fails(
        &["--database-url", &url("localhost", "?sslmode=strict"), "status"],
        &[],
        &["pdoflow-run: --database-url: sslmode=\"strict\": not one of disable, allow, prefer, require, verify-ca, verify-full"],
    );
    cluster.works(
        &[
            "--database-url",
            &url(
                "localhost",
                &format!("?sslmode=verify-full&sslrootcert={ca}"),
            ),
            "status",
        ],
        &[],
    );

    // The environment, where the URL says nothing; the URL wins over it.
    let plain_url = url("localhost", "");
    cluster.works(
        &["--database-url", &plain_url, "status"],
        &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", &ca)],
    );
    cluster.fails(
        &["--database-url", &plain_url, "status"],
        &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", &wrong_ca)],
        &["TLS: the server's certificate is not trusted"],
    );
    cluster.works(
        &[
            "--database-url",
            &url("localhost", &format!("?sslrootcert={ca}")),
            "status",
        ],
        &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", &wrong_ca)],
    );
    cluster.fails(
        &[
            "--database-url",
            &url("127.0.0.1", "?sslmode=disable"),
            "status",
        ],
        &[("PGSSLMODE", "require")],
        &["no pg_hba.conf entry"],
    );
    cluster.fails(
        &["--database-url", &plain_url, "status"],
        &[("PGSSLMODE", "verify-everything")],
        &["pdoflow-run: --database-url: PGSSLMODE=\"verify-everything\": not one of"],
    );
    // Client certificates from the environment.
    cluster.works(
        &[
            "--database-url",
            &cluster.url("localhost", "tls_cert_user", ""),
            "status",
        ],
        &[
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", &ca),
            ("PGSSLCERT", &certificate),
            ("PGSSLKEY", &key),
        ],
    );

    // libpq's default root certificate, ~/.postgresql/root.crt: require
    // checks the chain against it.
    let home = cluster.files.dir.join("home-with-root");
    std::fs::create_dir_all(home.join(".postgresql")).expect("a home");
    std::fs::copy(&cluster.files.wrong_ca, home.join(".postgresql/root.crt")).expect("root.crt");
    let home = path(&home);
    cluster.fails(
        &[
            "--database-url",
            &url("localhost", "?sslmode=require"),
            "status",
        ],
        &[("HOME", &home)],
        &["TLS: the server's certificate is not trusted"],
    );
    std::fs::copy(
        &cluster.files.ca,
        Path::new(&home).join(".postgresql/root.crt"),
    )
    .expect("root.crt");
    cluster.works(
        &[
            "--database-url",
            &url("127.0.0.1", "?sslmode=require"),
            "status",
        ],
        &[("HOME", &home)],
    );
    cluster.works(
        &[
            "--database-url",
            &url("localhost", "?sslmode=verify-full"),
            "status",
        ],
        &[("HOME", &home)],
    );

    // db.conf's keys.
    let db_conf = |root_certificate: &str, host: &str| {
        let file = cluster
            .files
            .dir
            .join(format!("db-{host}-{}.conf", root_certificate.len()));
        std::fs::write(
            &file,
            format!(
                "[postgresql]\nuser = postgres\nhost = {host}\nport = {}\ndatabase = postgres\n\
                 sslmode = verify-full\nsslrootcert = {root_certificate}\n",
                cluster.port
            ),
        )
        .expect("write db.conf");
        path(&file)
    };
    cluster.works(&["--config", &db_conf(&ca, "localhost"), "status"], &[]);
    let file = db_conf(&wrong_ca, "localhost");
    cluster.fails(
        &["--config", &file, "status"],
        &[],
        &[&format!("pdoflow-run: cannot connect to the database ({file}): TLS: the server's certificate is not trusted")],
    );
    cluster.fails(
        &["--config", &db_conf(&ca, "127.0.0.1"), "status"],
        &[],
        &["not valid for host \"127.0.0.1\""],
    );

    // Give the server a moment before it is stopped, so that connections
    // the checks dropped are gone (a cleaner log).
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(cluster);
}
