//! Statements whose plans a session keeps: prepared on first use, then run
//! from the plan. PostgreSQL re-plans them itself when the tables or
//! functions they use change. For SPI statements on hot paths, where
//! parsing and planning at every call would cost more than running.

use std::cell::OnceCell;
use std::thread::LocalKey;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgOid};
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiError, SpiTupleTable};

/// Where a session keeps one statement's plan: a `thread_local!` static.
pub type Plan = LocalKey<OnceCell<OwnedPreparedStatement>>;

/// Runs `query` (parameters of `types`) from the plan kept in `plan`,
/// preparing it on first use.
pub fn execute<'conn>(
    client: &mut SpiClient<'conn>,
    plan: &'static Plan,
    query: &str,
    types: &[pg_sys::Oid],
    args: &[DatumWithOid],
) -> Result<SpiTupleTable<'conn>, SpiError> {
    plan.with(|cell| {
        let statement = match cell.get() {
            Some(kept) => kept,
            None => {
                let types: Vec<PgOid> = types.iter().map(|&oid| PgOid::from(oid)).collect();
                let kept = client.prepare_mut(query, &types)?.keep();
                cell.get_or_init(|| kept)
            }
        };
        client.update(statement, None, args)
    })
}
