//! Puts the hand-written SQL under `sql/` into the extension's install script.
//! The PL/pgSQL functions call the Rust helpers named in `requires`.

use pgrx::prelude::*;

extension_sql_file!("../../sql/schema.sql", name = "schema", bootstrap);

extension_sql_file!(
    "../../sql/api/enqueue.sql",
    name = "enqueue",
    requires = ["schema", ids::uuid_generate_v7, checks::check_job]
);
extension_sql_file!(
    "../../sql/api/workers.sql",
    name = "workers",
    requires = ["schema", checks::check_worker_name]
);
extension_sql_file!(
    "../../sql/api/claim.sql",
    name = "claim",
    requires = ["workers", checks::check_claim]
);
extension_sql_file!(
    "../../sql/api/finish.sql",
    name = "finish",
    requires = [
        "schema",
        checks::check_finish_batch,
        retry_policy::retry_delay
    ]
);
extension_sql_file!(
    "../../sql/api/heartbeat.sql",
    name = "heartbeat",
    requires = ["finish", "workers"]
);
extension_sql_file!(
    "../../sql/api/release.sql",
    name = "release",
    requires = ["finish"]
);
extension_sql_file!(
    "../../sql/api/cancel_retry.sql",
    name = "cancel_retry",
    requires = ["finish"]
);
extension_sql_file!(
    "../../sql/api/sweep.sql",
    name = "sweep",
    requires = [
        "finish",
        "workers",
        checks::check_sweep,
        settings::retention,
        settings::worker_timeout,
        sweeper::background_sweeper_missing
    ]
);
