#[pgrx::pg_schema]
mod tests {
    use crate::tests::helpers::*;
    use pgrx::prelude::*;

    fn finish(id: &str, attempt: i32, rest: &str) -> String {
        one::<String>(&format!("SELECT pdoflow.finish('{id}', {attempt}{rest})"))
            .expect("finish returned NULL")
    }

    #[pg_test]
    fn success_stores_the_result_and_ends_the_job() {
        let id = enqueue("'t'");
        let (_, attempt) = claim("1")[0].clone();
        assert_eq!(
            finish(&id, attempt, ", result => '{\"rows\": 3}'"),
            "succeeded"
        );
        assert_eq!(state_of(&id), "succeeded");
        assert_eq!(job_field(&id, "result").as_deref(), Some(r#"{"rows": 3}"#));
        assert_eq!(
            job_field(&id, "(finished_at = now())").as_deref(),
            Some("true")
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pdoflow.active_jobs"),
            Some(0),
            "the hot table is left empty"
        );
    }

    #[pg_test]
    fn failure_with_attempts_left_requeues_with_backoff() {
        let id = enqueue("'t', max_attempts => 3");
        let (_, attempt) = claim("1")[0].clone();
        assert_eq!(finish(&id, attempt, ", error => 'boom'"), "queued");
        assert_eq!(state_of(&id), "queued");
        assert_eq!(job_field(&id, "last_error").as_deref(), Some("boom"));
        assert_eq!(job_field(&id, "worker"), None);
        // Default backoff: 1 s for the first retry, less up to 25% jitter.
        assert_eq!(
            job_field(
                &id,
                "run_at BETWEEN now() + interval '750 ms' AND now() + interval '1 s'"
            )
            .as_deref(),
            Some("true")
        );
        assert!(
            claim("1").is_empty(),
            "not due until the backoff has passed"
        );
    }

    #[pg_test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        run("SET LOCAL pdoflow.retry_backoff_base = '10s'");
        run("SET LOCAL pdoflow.retry_backoff_max = '25s'");
        let delay = |attempt: i32| {
            one::<bool>(&format!(
                "SELECT pdoflow._retry_delay({attempt}) BETWEEN interval '{low} ms' AND interval '{high} ms'",
                low = expected_ms(attempt) * 3 / 4,
                high = expected_ms(attempt)
            ))
        };
        fn expected_ms(attempt: i32) -> i64 {
            (10_000_i64 << (attempt - 1)).min(25_000)
        }
        for attempt in [1, 2, 3, 30] {
            assert_eq!(delay(attempt), Some(true), "attempt {attempt}");
        }
    }

    #[pg_test]
    fn failure_on_the_last_attempt_ends_as_failed() {
        run("SET LOCAL pdoflow.retry_backoff_base = 0");
        let id = enqueue("'t', max_attempts => 2");
        let (_, first) = claim("1")[0].clone();
        assert_eq!(finish(&id, first, ", error => 'first'"), "queued");
        let (_, second) = claim("1")[0].clone();
        assert_eq!(second, 2);
        assert_eq!(
            finish(
                &id,
                second,
                ", error => 'second', result => '{\"partial\": true}'"
            ),
            "failed"
        );
        assert_eq!(state_of(&id), "failed");
        assert_eq!(job_field(&id, "last_error").as_deref(), Some("second"));
        assert_eq!(job_field(&id, "attempt").as_deref(), Some("2"));
        assert_eq!(
            job_field(&id, "result").as_deref(),
            Some(r#"{"partial": true}"#)
        );
    }

    #[pg_test]
    fn a_success_after_a_failure_keeps_the_last_error() {
        run("SET LOCAL pdoflow.retry_backoff_base = 0");
        let id = enqueue("'t'");
        finish(&id, claim("1")[0].1, ", error => 'flaky'");
        assert_eq!(finish(&id, claim("1")[0].1, ""), "succeeded");
        assert_eq!(job_field(&id, "last_error").as_deref(), Some("flaky"));
    }

    #[pg_test]
    fn stale_or_unknown_claims_are_rejected_and_change_nothing() {
        install_failure_probe();
        run("SET LOCAL pdoflow.retry_backoff_base = 0");
        let id = enqueue("'t'");
        let not_claimed = failure(&format!("SELECT pdoflow.finish('{id}', 1)"));
        assert_eq!(not_claimed, format!("55000: claim (job {id}, attempt 1) is not current: the job has not been claimed yet"));
        let (_, first) = claim("1")[0].clone();
        finish(&id, first, ", error => 'x'");
        let (_, second) = claim("1")[0].clone();
        let stale = failure(&format!("SELECT pdoflow.finish('{id}', {first})"));
        assert_eq!(
            stale,
            format!(
                "55000: claim (job {id}, attempt 1) is not current: the job is running attempt 2"
            )
        );
        assert_eq!(state_of(&id), "running", "the stale finish changed nothing");
        finish(&id, second, "");
        let twice = failure(&format!("SELECT pdoflow.finish('{id}', {second})"));
        assert_eq!(
            twice,
            format!("55000: claim (job {id}, attempt 2) is not current: the job already succeeded")
        );
        let unknown = "00000000-0000-7000-8000-000000000000";
        assert_eq!(
            failure(&format!("SELECT pdoflow.finish('{unknown}', 1)")),
            format!("22023: job {unknown} does not exist")
        );
        assert_eq!(
            failure("SELECT pdoflow.finish(NULL, 1)"),
            "22004: id must not be NULL"
        );
        assert_eq!(
            failure(&format!("SELECT pdoflow.finish('{id}', NULL)")),
            "22004: attempt must not be NULL"
        );
        assert_eq!(
            failure(&format!("SELECT pdoflow.finish('{id}', 0)")),
            "22023: attempt must be at least 1, got 0"
        );
    }

    #[pg_test]
    fn finish_many_reports_each_claim_in_input_order() {
        run("SET LOCAL pdoflow.retry_backoff_base = '1h'");
        let ok = enqueue("'t', priority => 3");
        let retried = enqueue("'t', priority => 2");
        let dead = enqueue("'t', priority => 1, max_attempts => 1");
        let claims = claim("3");
        let attempts: Vec<String> = claims
            .iter()
            .map(|(_, attempt)| attempt.to_string())
            .collect();
        let unknown = "00000000-0000-7000-8000-000000000000";
        let rows = one::<Vec<String>>(&format!(
            "SELECT array_agg(format('%s %s %s', id = ANY(ARRAY['{ok}', '{retried}', '{dead}']::uuid[]), state, rejected IS NOT NULL)) \
             FROM pdoflow.finish_many(ARRAY['{ok}', '{retried}', '{dead}', '{unknown}']::uuid[], ARRAY[{a}, 1]::int[], \
                                      ARRAY[NULL, 'again', 'fatal', NULL], ARRAY['{{\"r\": 1}}', NULL, NULL, NULL]::jsonb[])",
            a = attempts.join(", ")
        ))
        .expect("no rows");
        assert_eq!(
            rows,
            vec!["t succeeded f", "t queued f", "t failed f", "f  t"]
        );
        assert_eq!(job_field(&ok, "result").as_deref(), Some(r#"{"r": 1}"#));
        assert_eq!(job_field(&retried, "last_error").as_deref(), Some("again"));
        assert_eq!(job_field(&dead, "last_error").as_deref(), Some("fatal"));
    }

    #[pg_test]
    fn finish_many_without_errors_or_results_means_success() {
        let id = enqueue("'t'");
        let attempt = claim("1")[0].1;
        let state = one::<String>(&format!(
            "SELECT state FROM pdoflow.finish_many(ARRAY['{id}']::uuid[], ARRAY[{attempt}])"
        ));
        assert_eq!(state.as_deref(), Some("succeeded"));
    }

    #[pg_test]
    fn bad_finish_many_input_is_rejected() {
        install_failure_probe();
        let id = "00000000-0000-7000-8000-000000000001";
        let cases = [
            (
                "SELECT * FROM pdoflow.finish_many(NULL, '{1}')".to_owned(),
                "22004: ids must not be NULL".to_owned(),
            ),
            (
                format!("SELECT * FROM pdoflow.finish_many('{{{id}}}', NULL)"),
                "22004: attempts must not be NULL".to_owned(),
            ),
            (
                format!("SELECT * FROM pdoflow.finish_many('{{{id}}}', '{{1,2}}')"),
                "22023: attempts has 2 elements but ids has 1".to_owned(),
            ),
            (
                format!("SELECT * FROM pdoflow.finish_many('{{{id}}}', '{{1}}', '{{a,b}}')"),
                "22023: errors has 2 elements but ids has 1".to_owned(),
            ),
            (
                format!("SELECT * FROM pdoflow.finish_many('{{{id}}}', '{{1}}', NULL, '{{}}')"),
                "22023: results has 0 elements but ids has 1".to_owned(),
            ),
            (
                "SELECT * FROM pdoflow.finish_many(ARRAY[NULL]::uuid[], '{1}')".to_owned(),
                "22004: ids[1] must not be NULL".to_owned(),
            ),
            (
                format!("SELECT * FROM pdoflow.finish_many('{{{id}}}', '{{NULL}}')"),
                "22004: attempts[1] must not be NULL".to_owned(),
            ),
            (
                format!("SELECT * FROM pdoflow.finish_many('{{{id},{id}}}', '{{1,1}}')"),
                format!("22023: ids lists job {id} more than once"),
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(failure(&sql), expected, "{sql}");
        }
    }

    #[pg_test]
    fn heartbeat_extends_the_current_lease() {
        let id = enqueue("'t'");
        let attempt = claim("1, lease => '1 minute'")[0].1;
        let renewed = one::<bool>(&format!(
            "SELECT pdoflow.heartbeat('{id}', {attempt}, '10 minutes') = now() + interval '10 minutes'"
        ));
        assert_eq!(renewed, Some(true));
        // Without a lease, the last lease's length is used again.
        let again = one::<bool>(&format!(
            "SELECT pdoflow.heartbeat('{id}', {attempt}) = now() + interval '10 minutes'"
        ));
        assert_eq!(again, Some(true));
        assert_eq!(
            job_field(&id, "(heartbeat_at = now())").as_deref(),
            Some("true")
        );
    }

    #[pg_test]
    fn heartbeat_of_a_stale_claim_is_rejected() {
        install_failure_probe();
        let id = enqueue("'t'");
        let attempt = claim("1")[0].1;
        run(&format!("SELECT pdoflow.cancel('{id}')"));
        let rejected = failure(&format!("SELECT pdoflow.heartbeat('{id}', {attempt})"));
        assert_eq!(
            rejected,
            format!("55000: claim (job {id}, attempt 1) is not current: the job was cancelled")
        );
        assert_eq!(
            failure(&format!("SELECT pdoflow.heartbeat('{id}', 1, '-1 s')")),
            "22023: lease must be a positive interval, got -00:00:01"
        );
    }
}
