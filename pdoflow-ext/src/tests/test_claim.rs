#[pgrx::pg_schema]
mod tests {
    use crate::tests::helpers::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn claims_highest_priority_then_earliest_due_then_oldest() {
        let low = enqueue("'t', priority => 1");
        let high_later = enqueue("'t', priority => 5");
        let high_due_earlier = enqueue("'t', priority => 5, run_at => now() - interval '1 minute'");
        let high_newest = enqueue("'t', priority => 5");
        let order: Vec<String> = claim("10").into_iter().map(|(id, _)| id).collect();
        assert_eq!(order, vec![high_due_earlier, high_later, high_newest, low]);
    }

    #[pg_test]
    fn claims_only_due_jobs() {
        enqueue("'later', run_at => now() + interval '1 second'");
        let due = enqueue("'now'");
        let claimed = claim("10");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].0, due);
    }

    #[pg_test]
    fn claim_marks_jobs_running_for_the_worker_and_lease() {
        let id = enqueue("'t'");
        let claimed = claim("1, worker => 'node-1', lease => '30 seconds'");
        assert_eq!(claimed, vec![(id.clone(), 1)]);
        assert_eq!(state_of(&id), "running");
        assert_eq!(job_field(&id, "worker").as_deref(), Some("node-1"));
        assert_eq!(
            job_field(&id, "(started_at = now())").as_deref(),
            Some("true")
        );
        assert_eq!(
            job_field(&id, "(lease_expires_at = now() + interval '30 seconds')").as_deref(),
            Some("true")
        );
        assert!(claim("1").is_empty(), "a running job is not claimed again");
    }

    #[pg_test]
    fn claim_returns_everything_a_handler_needs() {
        let id = enqueue("'resize', '{\"w\": 10}', 'images', 3, NULL, 4");
        let row = one::<String>(
            "SELECT format('%s|%s|%s|%s|%s|%s|%s', task, args, queue, priority, attempt, max_attempts, \
             lease_expires_at = now() + interval '5 minutes') FROM pdoflow.claim()",
        );
        assert_eq!(row.as_deref(), Some(r#"resize|{"w": 10}|images|3|1|4|t"#));
        assert_eq!(state_of(&id), "running");
    }

    #[pg_test]
    fn claims_at_most_n() {
        for _ in 0..5 {
            enqueue("'t'");
        }
        assert_eq!(claim("2").len(), 2);
        assert_eq!(claim("10").len(), 3);
        assert!(claim("10").is_empty());
    }

    #[pg_test]
    fn claims_only_from_the_given_queues_merged_by_priority() {
        let a_low = enqueue("'t', queue => 'a', priority => 1");
        let b_high = enqueue("'t', queue => 'b', priority => 9");
        enqueue("'t', queue => 'c', priority => 100");
        let a_high = enqueue("'t', queue => 'a', priority => 5");
        let order: Vec<String> = claim("10, ARRAY['a', 'b', 'a']")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(order, vec![b_high, a_high, a_low]);
        assert_eq!(claim("10, ARRAY['a', 'b']").len(), 0);
        assert_eq!(
            claim("10").len(),
            1,
            "queue c's job is still there for claims from every queue"
        );
    }

    #[pg_test]
    fn bad_claim_input_is_rejected_with_a_precise_error() {
        install_failure_probe();
        let cases = [
            (
                "SELECT * FROM pdoflow.claim(0)",
                "22023: n must be at least 1, got 0",
            ),
            (
                "SELECT * FROM pdoflow.claim(NULL)",
                "22004: n must not be NULL",
            ),
            (
                "SELECT * FROM pdoflow.claim(1001)",
                "22023: n must be at most 1000 (pdoflow.max_claim), got 1001",
            ),
            (
                "SELECT * FROM pdoflow.claim(1, '{}')",
                "22023: queues must not be an empty array",
            ),
            (
                "SELECT * FROM pdoflow.claim(1, ARRAY['a', NULL])",
                "22004: queues[2] must not be NULL",
            ),
            (
                "SELECT * FROM pdoflow.claim(1, ARRAY[''])",
                "22023: queues[1] must not be empty",
            ),
            (
                "SELECT * FROM pdoflow.claim(1, worker => '')",
                "22023: worker must not be empty",
            ),
            (
                "SELECT * FROM pdoflow.claim(1, lease => '-5 minutes')",
                "22023: lease must be a positive interval, got -00:05:00",
            ),
            (
                "SELECT * FROM pdoflow.claim(1, lease => '0')",
                "22023: lease must be a positive interval, got 00:00:00",
            ),
            (
                "SELECT * FROM pdoflow.claim(1, lease => NULL)",
                "22004: lease must not be NULL",
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(failure(sql), expected, "{sql}");
        }
    }

    #[pg_test]
    fn max_claim_setting_raises_the_cap() {
        run("SET LOCAL pdoflow.max_claim = 5000");
        assert!(claim("5000").is_empty());
    }
}
