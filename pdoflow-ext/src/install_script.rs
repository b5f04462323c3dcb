//! Puts the hand-written SQL under `sql/` into the extension's install script.
//! The PL/pgSQL functions call the Rust helpers named in `requires`.

use pgrx::prelude::*;

extension_sql_file!("../../sql/schema.sql", name = "schema", bootstrap);

extension_sql_file!(
    "../../sql/api/states.sql",
    name = "states",
    requires = ["schema"]
);
extension_sql_file!(
    "../../sql/api/unique_keys.sql",
    name = "unique_keys",
    requires = ["schema"]
);
extension_sql_file!(
    "../../sql/api/history.sql",
    name = "history",
    requires = [
        "states",
        "unique_keys",
        results::jobs_ended,
        stats::count_jobs,
        stats::count_ended
    ]
);
extension_sql_file!(
    "../../sql/api/dependencies.sql",
    name = "dependencies",
    requires = ["history"]
);
extension_sql_file!(
    "../../sql/api/postings.sql",
    name = "postings",
    requires = [
        "dependencies",
        api::ids::uuid_generate_v7,
        input::checks::check_posting,
        input::checks::check_posting_ref,
        input::checks::check_posting_status,
        api::isolation::require_read_committed
    ]
);
extension_sql_file!(
    "../../sql/api/tasks.sql",
    name = "tasks",
    requires = [
        "schema",
        input::checks::check_worker_name,
        input::task_schema::check_args_schema,
        input::task_schema::validate_args,
        settings::require_registered_tasks,
        tasks::task_grants::check_task_grant,
        tasks::task_grants::calling_role_name,
        tasks::task_grants::may_enqueue_task
    ]
);
extension_sql_file!(
    "../../sql/api/enqueue.sql",
    name = "enqueue",
    requires = [
        "postings",
        "claim_floors",
        "tasks",
        api::ids::uuid_generate_v7,
        input::checks::check_dependencies,
        input::checks::check_unique_keys,
        input::checks::unique_for_value,
        input::queue_controls::check_concurrency_keys,
        tasks::task_grants::check_task_grants
    ]
);
extension_sql_file!(
    "../../sql/api/dag.sql",
    name = "dag",
    requires = [
        "enqueue",
        api::submit_dag::plan_dag,
        input::checks::unique_for_value
    ]
);
extension_sql_file!(
    "../../sql/api/workers.sql",
    name = "workers",
    requires = [
        "schema",
        input::checks::check_worker_name,
        input::checks::check_worker_tasks
    ]
);
extension_sql_file!(
    "../../sql/api/claim_floors.sql",
    name = "claim_floors",
    requires = [
        "schema",
        claim_floors::note_queued_sql,
        claim_floors::claim_levels,
        claim_floors::raise_claim_floor,
        claim_floors::start_learning,
        claim_floors::finish_learning,
        claim_floors::forget_claim_floors
    ]
);
extension_sql_file!(
    "../../sql/api/queue_controls.sql",
    name = "queue_controls",
    requires = [
        "schema",
        flow_control::_running_slot_freed,
        flow_control::_queue_controls_written,
        flow_control::queue_limits_changed,
        flow_control::running_slots,
        flow_control::forget_flow_counts,
        claim_wait::wake_claimers_at_commit,
        input::queue_controls::check_queue_name,
        input::queue_controls::check_queue_limits,
        input::queue_controls::check_key_limit
    ]
);
extension_sql_file!(
    "../../sql/api/claim.sql",
    name = "claim",
    requires = [
        "workers",
        "dependencies",
        "claim_floors",
        "queue_controls",
        input::checks::check_claim,
        input::queue_controls::check_claim_wait,
        flow_control::take_running_slots,
        flow_control::give_back_running_slots,
        flow_control::start_running_count,
        flow_control::finish_running_count,
        flow_control::take_rate_tokens,
        flow_control::give_back_rate_tokens,
        flow_control::next_claim_allowed,
        claim_wait::claim_wait_enter,
        claim_wait::claim_wait_leave,
        claim_wait::claim_wait_sleep
    ]
);
extension_sql_file!(
    "../../sql/api/finish.sql",
    name = "finish",
    requires = [
        "postings",
        api::isolation::require_read_committed,
        input::checks::check_finish_batch,
        input::checks::check_results,
        api::retry_policy::retry_delay
    ]
);
extension_sql_file!(
    "../../sql/api/heartbeat.sql",
    name = "heartbeat",
    requires = ["finish", "workers", input::checks::check_progress]
);
extension_sql_file!(
    "../../sql/api/results.sql",
    name = "results",
    requires = ["schema"]
);
extension_sql_file!(
    "../../sql/api/schedules.sql",
    name = "schedules",
    requires = [
        "enqueue",
        "tasks",
        input::checks::check_job_batch,
        schedules::check_schedule_name,
        schedules::check_schedule,
        schedules::cron_next,
        schedules::cron_latest,
        tasks::task_grants::may_enqueue_task
    ]
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
    "../../sql/api/compaction.sql",
    name = "compaction",
    requires = [
        "finish",
        settings::compaction_threshold,
        settings::compaction_max_jobs
    ]
);
extension_sql_file!(
    "../../sql/api/sweep.sql",
    name = "sweep",
    requires = [
        "finish",
        "workers",
        "schedules",
        "unique_keys",
        "queue_controls",
        input::checks::check_sweep,
        claim_wait::wake_claimers,
        settings::retention,
        settings::worker_timeout,
        sweeper::background_sweeper_missing
    ]
);
extension_sql_file!(
    "../../sql/api/stats.sql",
    name = "stats",
    requires = [
        "schema",
        stats::stats,
        stats::reset_stats,
        input::queue_controls::check_queue_name
    ]
);
extension_sql_file!(
    "../../sql/api/shards.sql",
    name = "shards",
    requires = ["schema"]
);
extension_sql_file!(
    "../../sql/api/consistency.sql",
    name = "consistency",
    requires = ["dag", "claim", "finish"]
);
extension_sql_file!(
    "../../sql/roles.sql",
    name = "roles",
    requires = [
        "consistency",
        "sweep",
        "compaction",
        "cancel_retry",
        "heartbeat",
        "release",
        "results",
        "schedules",
        "queue_controls",
        "stats",
        "shards"
    ],
    finalize
);
