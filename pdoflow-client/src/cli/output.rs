//! Printing for the admin commands: aligned tables for people, JSON for scripts.

use comfy_table::{presets, Table};
use serde::Serialize;

use crate::error::{Error, Result};

/// Prints `rows` as a JSON array.
pub fn json<T: Serialize>(rows: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(rows).map_err(|source| Error::Json {
        context: "output".into(),
        source,
    })?;
    println!("{text}");
    Ok(())
}

/// Prints a table with `header`; "(none)" when there are no rows.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_BORDERS_ONLY)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    println!("{table}");
}

/// Prints one record as `name: value` lines, names right-aligned.
pub fn fields(fields: &[(&str, String)]) {
    let width = fields
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    for (name, value) in fields {
        println!("{name:>width$}: {value}");
    }
}
