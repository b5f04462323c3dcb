#[pgrx::pg_schema]
mod tests {
    use crate::tests::helpers::*;
    use pgrx::prelude::*;

    const UNKNOWN: &str = "00000000-0000-7000-8000-000000000000";

    #[pg_test]
    fn cancel_ends_queued_and_running_jobs() {
        let queued = enqueue("'t', priority => 1");
        let running = enqueue("'t', priority => 2");
        let attempt = claim("1")[0].1;
        assert_eq!(
            one::<bool>(&format!("SELECT pdoflow.cancel('{queued}')")),
            Some(true)
        );
        assert_eq!(
            one::<bool>(&format!("SELECT pdoflow.cancel('{running}')")),
            Some(true)
        );
        assert_eq!(state_of(&queued), "cancelled");
        assert_eq!(state_of(&running), "cancelled");
        assert_eq!(
            one::<bool>(&format!("SELECT pdoflow.cancel('{queued}')")),
            Some(false),
            "already ended"
        );
        install_failure_probe();
        let late = failure(&format!("SELECT pdoflow.finish('{running}', {attempt})"));
        assert_eq!(
            late,
            format!(
                "55000: claim (job {running}, attempt 1) is not current: the job was cancelled"
            )
        );
        assert!(claim("10").is_empty());
    }

    #[pg_test]
    fn retry_requeues_failed_and_cancelled_jobs() {
        let failed = enqueue("'t', max_attempts => 1");
        let attempt = claim("1")[0].1;
        run(&format!(
            "SELECT pdoflow.finish('{failed}', {attempt}, 'nope')"
        ));
        assert_eq!(state_of(&failed), "failed");
        assert_eq!(
            one::<bool>(&format!("SELECT pdoflow.retry('{failed}')")),
            Some(true)
        );
        assert_eq!(state_of(&failed), "queued");
        assert_eq!(
            job_field(&failed, "max_attempts").as_deref(),
            Some("2"),
            "one more attempt is allowed"
        );
        assert_eq!(job_field(&failed, "finished_at"), None);
        assert_eq!(claim("1"), vec![(failed.clone(), 2)]);

        let cancelled = enqueue("'t'");
        run(&format!("SELECT pdoflow.cancel('{cancelled}')"));
        assert_eq!(
            one::<bool>(&format!("SELECT pdoflow.retry('{cancelled}')")),
            Some(true)
        );
        assert_eq!(state_of(&cancelled), "queued");
        assert_eq!(
            one::<bool>(&format!("SELECT pdoflow.retry('{cancelled}')")),
            Some(false),
            "already queued"
        );
    }

    #[pg_test]
    fn a_succeeded_job_cannot_be_retried() {
        install_failure_probe();
        let id = enqueue("'t'");
        let attempt = claim("1")[0].1;
        run(&format!("SELECT pdoflow.finish('{id}', {attempt})"));
        assert_eq!(
            failure(&format!("SELECT pdoflow.retry('{id}')")),
            format!("55000: job {id} succeeded and cannot be retried")
        );
    }

    #[pg_test]
    fn unknown_or_null_ids_are_rejected() {
        install_failure_probe();
        for function in ["cancel", "retry"] {
            assert_eq!(
                failure(&format!("SELECT pdoflow.{function}('{UNKNOWN}')")),
                format!("22023: job {UNKNOWN} does not exist")
            );
            assert_eq!(
                failure(&format!("SELECT pdoflow.{function}(NULL)")),
                "22004: id must not be NULL"
            );
        }
        assert_eq!(
            failure(&format!("SELECT pdoflow.heartbeat('{UNKNOWN}', 1)")),
            format!("22023: job {UNKNOWN} does not exist")
        );
    }

    #[pg_test]
    fn the_jobs_view_shows_every_state() {
        run("SET LOCAL pdoflow.retry_backoff_base = 0");
        let succeeded = enqueue("'t', priority => 4");
        let failed = enqueue("'t', priority => 3, max_attempts => 1");
        let running = enqueue("'t', priority => 2");
        let cancelled = enqueue("'t'");
        let queued = enqueue("'t', run_at => now() + interval '1 day'");
        let blocked = enqueue(&format!("'t', depends_on => ARRAY['{queued}'::uuid]"));
        let claims = claim("3");
        run(&format!(
            "SELECT pdoflow.finish('{succeeded}', {})",
            claims[0].1
        ));
        run(&format!(
            "SELECT pdoflow.finish('{failed}', {}, 'x')",
            claims[1].1
        ));
        run(&format!("SELECT pdoflow.cancel('{cancelled}')"));
        let states = [
            (succeeded, "succeeded"),
            (failed, "failed"),
            (running, "running"),
            (cancelled, "cancelled"),
            (queued, "queued"),
            (blocked, "blocked"),
        ];
        for (id, state) in states {
            assert_eq!(state_of(&id), state);
        }
        let columns = one::<String>(
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = 'pdoflow.jobs'::regclass AND attnum > 0",
        );
        assert_eq!(
            columns.as_deref(),
            Some("id,task,queue,priority,state,attempt,max_attempts,args,result,last_error,run_at,created_at,started_at,finished_at,lease_expires_at,worker,heartbeat_at,posting,depends_on,dependency_mode,node,enqueued_by,unique_key,progress,concurrency_key")
        );
    }
}
