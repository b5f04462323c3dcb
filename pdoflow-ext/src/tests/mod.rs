//! `#[pg_test]` suites. Each test runs inside one transaction of a real server
//! with the extension created, and is rolled back afterwards; so `now()` is
//! fixed for a whole test, and the background worker never sees test rows.
//! Each file keeps its tests in an inline `#[pg_schema] mod tests`, the
//! schema the pgrx harness calls them from.

mod helpers;
mod test_announcements;
mod test_claim;
mod test_enqueue;
mod test_finish;
mod test_flow_control;
mod test_lifecycle;
