//! A primary with a synchronous standby, both with pdoflow preloaded, as
//! throwaway clusters of the test's own: PostgreSQL's streaming replication
//! (`pg_basebackup -R`, `synchronous_standby_names`), on this machine. For
//! the tests of what survives losing the primary: kill it (`kill -9` of
//! the postmaster) and promote the standby.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::own_cluster::{as_postgres, free_port, initdb, pg_program, pg_root, succeed};

/// One server of the pair.
pub struct Server {
    pub data: PathBuf,
    pub port: u16,
}

impl Server {
    /// A URL for `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn connect(&self, database: &str) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(&self.url(database), NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    fn start(&self, settings: &str) {
        let data = self.data.display().to_string();
        let log = self.data.join("server.log").display().to_string();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= {settings}",
            self.port
        );
        let started = as_postgres(
            &pg_program("pg_ctl"),
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "120", "start",
            ],
        );
        if !started.status.success() {
            panic!("{} did not start: {}", self.data.display(), self.log());
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }

    /// The postmaster's process id.
    fn postmaster(&self) -> Option<i32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

/// The pair; dropping it stops both servers and removes their data.
pub struct Pair {
    pub primary: Server,
    pub standby: Server,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for server in [&self.primary, &self.standby] {
            let data = server.data.display().to_string();
            let _ = as_postgres(
                &pg_program("pg_ctl"),
                &["-D", &data, "-m", "immediate", "-w", "stop"],
            );
            let _ = std::fs::remove_dir_all(&server.data);
        }
    }
}

impl Pair {
    /// A primary whose commits wait for the standby to flush them
    /// (`synchronous_standby_names = '*'`, `synchronous_commit = on`), and
    /// that standby, streaming. `settings` (`-c name=value ...`) go to both;
    /// pdoflow's sweeper works in `database`, which is created with pdoflow.
    pub async fn start(label: &str, database: &str, settings: &str) -> Pair {
        assert!(
            std::env::var(crate::URL_VARIABLE).is_ok(),
            "{} is not set: run the integration tests with `make test`",
            crate::URL_VARIABLE
        );
        let root = pg_root();
        let name = |role: &str| root.join(format!("{label}-{role}-{}", std::process::id()));
        let pair = Pair {
            primary: Server {
                data: name("primary"),
                port: free_port(),
            },
            standby: Server {
                data: name("standby"),
                port: free_port(),
            },
        };
        for server in [&pair.primary, &pair.standby] {
            let _ = std::fs::remove_dir_all(&server.data);
        }
        initdb(&pair.primary.data);
        let settings = format!(
            "-c shared_preload_libraries=pdoflow -c pdoflow.database={database} \
             -c pdoflow.sweep_interval=100ms -c wal_level=replica -c max_wal_senders=5 \
             -c hot_standby=on {settings}"
        );
        pair.primary.start(&settings);
        let admin = pair
            .primary
            .connect("postgres")
            .await
            .expect("connect to the primary");
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .expect("the pair's database");
        pair.primary
            .connect(database)
            .await
            .expect("connect to the pair's database")
            .batch_execute("CREATE EXTENSION pdoflow")
            .await
            .expect("CREATE EXTENSION pdoflow on the primary");

        let primary_port = pair.primary.port.to_string();
        let standby_data = pair.standby.data.display().to_string();
        succeed(
            "pg_basebackup",
            as_postgres(
                &pg_program("pg_basebackup"),
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary_port,
                    "-U",
                    "postgres",
                    "-D",
                    &standby_data,
                    "-R",
                    "-X",
                    "stream",
                    "--checkpoint=fast",
                ],
            ),
        );
        // The copy holds the primary's log: start the standby's afresh.
        let _ = std::fs::remove_file(pair.standby.data.join("server.log"));
        pair.standby.start(&settings);

        for statement in [
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "SELECT pg_reload_conf()",
        ] {
            admin
                .batch_execute(statement)
                .await
                .expect("make the standby synchronous");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state: Option<String> = admin
                .query_opt("SELECT sync_state FROM pg_stat_replication", &[])
                .await
                .expect("pg_stat_replication")
                .map(|row| row.get(0));
            if state.as_deref() == Some("sync") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the standby did not become synchronous (sync_state {state:?}): {}",
                pair.standby.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pair
    }

    /// Kills the primary's postmaster with SIGKILL, as a crash would; its
    /// backends exit when they notice. Returns once nothing answers on its
    /// port.
    pub fn kill_primary(&self) {
        let pid = self
            .primary
            .postmaster()
            .expect("the primary's postmaster.pid");
        succeed(
            "kill -9 the primary",
            std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .output()
                .expect("run kill"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.primary.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the killed primary still listens"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Promotes the standby and waits until it accepts writes.
    pub async fn promote(&self) {
        let data = self.standby.data.display().to_string();
        succeed(
            "pg_ctl promote",
            as_postgres(&pg_program("pg_ctl"), &["-D", &data, "-w", "promote"]),
        );
        let admin = self
            .standby
            .connect("postgres")
            .await
            .expect("connect to the promoted standby");
        let deadline = Instant::now() + Duration::from_secs(60);
        while admin
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .expect("pg_is_in_recovery")
            .get::<_, bool>(0)
        {
            assert!(Instant::now() < deadline, "the standby stays in recovery");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
