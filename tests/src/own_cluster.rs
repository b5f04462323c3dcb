//! For the tests that run a throwaway cluster of their own (TLS, a server
//! without pdoflow preloaded): server programs of the version under test,
//! run as the postgres user, in the repository's `.pg` directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A server program of the version under test, by its full path.
pub fn pg_program(name: &str) -> String {
    crate::pg_bindir().join(name).display().to_string()
}

/// Runs `program` as the postgres user (PostgreSQL refuses root), from `/`
/// (postgres may not enter the current directory).
pub fn as_postgres(program: &str, args: &[&str]) -> Output {
    let me = Command::new("id").arg("-un").output().expect("run id");
    let mut command = if String::from_utf8_lossy(&me.stdout).trim() == "postgres" {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "-u", "postgres", "--", program]);
        sudo
    };
    command
        .args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|error| panic!("run {program}: {error}"))
}

/// Panics naming `what` with its output unless it succeeded.
pub fn succeed(what: &str, output: Output) {
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The repository's `.pg` directory, resolved (scripts/common.sh's
/// `ensure_pg_root` makes it usable by the postgres user).
pub fn pg_root() -> PathBuf {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_owned();
    let output = Command::new("bash")
        .arg("-c")
        .arg("source scripts/common.sh && ensure_pg_root >&2 && echo \"${PG_ROOT}\"")
        .current_dir(&repository)
        .output()
        .expect("run scripts/common.sh");
    assert!(
        output.status.success(),
        "ensure_pg_root: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A new cluster in `data` (trust authentication, UTF8, user postgres).
pub fn initdb(data: &Path) {
    let data = data.display().to_string();
    succeed(
        "initdb",
        as_postgres(
            &pg_program("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        ),
    );
}
