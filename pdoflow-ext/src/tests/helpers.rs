//! SQL helpers shared by the `#[pg_test]` suites.

use pgrx::prelude::*;

/// Runs a query that returns one value; fails the test on error.
pub fn one<T: IntoDatum + FromDatum>(sql: &str) -> Option<T> {
    Spi::get_one::<T>(sql).unwrap_or_else(|error| panic!("{sql}: {error}"))
}

pub fn run(sql: &str) {
    Spi::run(sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// Enqueues a job with the given SQL arguments; returns its id as text.
pub fn enqueue(arguments: &str) -> String {
    one::<String>(&format!("SELECT pdoflow.enqueue({arguments})::text"))
        .expect("enqueue returned NULL")
}

/// A column of one job, as `pdoflow.jobs` shows it, as text.
pub fn job_field(id: &str, column: &str) -> Option<String> {
    one::<String>(&format!(
        "SELECT ({column})::text FROM pdoflow.jobs WHERE id = '{id}'"
    ))
}

pub fn state_of(id: &str) -> String {
    job_field(id, "state").expect("no such job")
}

/// Claims with the given SQL arguments; returns (id, attempt) per job, in order.
pub fn claim(arguments: &str) -> Vec<(String, i32)> {
    let sql = format!("SELECT id::text, attempt FROM pdoflow.claim({arguments})");
    Spi::connect_mut(|client| {
        let rows = client
            .update(&sql, None, &[])
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        rows.into_iter()
            .map(|row| {
                let id: Option<String> = row.get(1).unwrap_or_else(|error| panic!("id: {error}"));
                let attempt: Option<i32> = row
                    .get(2)
                    .unwrap_or_else(|error| panic!("attempt: {error}"));
                (
                    id.expect("claim returned a NULL id"),
                    attempt.expect("claim returned a NULL attempt"),
                )
            })
            .collect()
    })
}

/// Installs `pg_temp.failure(sql)`: runs `sql` and returns `SQLSTATE: message`
/// of the error it raised, or NULL when it succeeded. Its subtransaction rolls
/// back whatever `sql` did.
pub fn install_failure_probe() {
    run(r#"
        CREATE FUNCTION pg_temp.failure(sql text) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE sql;
            RETURN NULL;
        EXCEPTION WHEN OTHERS THEN
            RETURN SQLSTATE || ': ' || SQLERRM;
        END $$"#);
}

/// The `SQLSTATE: message` that `sql` fails with; panics when it succeeds.
pub fn failure(sql: &str) -> String {
    let quoted = sql.replace('\'', "''");
    one::<String>(&format!("SELECT pg_temp.failure('{quoted}')"))
        .unwrap_or_else(|| panic!("expected {sql} to fail"))
}
