//! How figures are printed: one line each, a label, the figure, and its
//! ratio to the plain-SQL ceiling measured in the same run when there is one.

use std::time::Duration;

use anyhow::Result;
use tokio_postgres::Client;

/// Prints a scenario's title and what it does.
pub fn scenario(name: &str, description: &str) {
    println!();
    println!("== {name}: {description}");
}

/// Prints one figure.
pub fn figure(label: &str, value: impl std::fmt::Display) {
    println!("  {label:<52} {value}");
}

/// Prints a rate, and its ratio to `ceiling` (same unit) when known.
pub fn rate(label: &str, per_second: f64, unit: &str, ceiling: Option<f64>) {
    match ceiling {
        Some(ceiling) if ceiling > 0.0 => figure(
            label,
            format!(
                "{per_second:>10.0} {unit}/s   ({:.2} of the plain-SQL ceiling, {ceiling:.0}/s)",
                per_second / ceiling
            ),
        ),
        _ => figure(label, format!("{per_second:>10.0} {unit}/s")),
    }
}

pub fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// Prints the machine, the server and every server setting that is not
/// PostgreSQL's default, so that a figure can be reproduced.
pub async fn settings(db: &Client, command: &str) -> Result<()> {
    let version: String = db.query_one("SHOW server_version", &[]).await?.get(0);
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("pdoflow-bench: {cores} cores, PostgreSQL {version}");
    println!("command: {command}");
    let rows = db
        .query(
            "SELECT name, current_setting(name) FROM pg_settings
             WHERE source NOT IN ('default', 'override', 'client', 'session')
               AND name NOT IN ('config_file', 'data_directory', 'hba_file', 'ident_file',
                                'port', 'listen_addresses', 'unix_socket_directories',
                                'log_line_prefix', 'lc_messages', 'lc_monetary', 'lc_numeric',
                                'lc_time', 'DateStyle', 'TimeZone', 'log_timezone',
                                'default_text_search_config', 'dynamic_shared_memory_type')
             ORDER BY name",
            &[],
        )
        .await?;
    let listed: Vec<String> = rows
        .iter()
        .map(|row| format!("{}={}", row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect();
    println!(
        "server settings that differ from the defaults: {}",
        listed.join(", ")
    );
    Ok(())
}

/// The p-th percentile (0-100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
