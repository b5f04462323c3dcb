//! Flow control where pdoflow is not in shared_preload_libraries (as in
//! these tests' server): running and rate limits are refused at once,
//! pauses and per-key limits work, and a waiting claim polls.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::helpers::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn running_and_rate_limits_need_shared_memory() {
        install_failure_probe();
        for sql in [
            "SELECT pdoflow.set_queue_limits('q', max_running => 2)",
            "SELECT pdoflow.set_queue_limits('q', rate => 10)",
        ] {
            assert_eq!(
                failure(sql),
                "55000: queue limits need pdoflow in shared_preload_libraries"
            );
        }
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pdoflow.queue_controls"),
            Some(0)
        );
        // Removing limits that are not there needs nothing.
        run("SELECT pdoflow.set_queue_limits('q')");
    }

    #[pg_test]
    fn pauses_and_key_limits_work_without_shared_memory() {
        enqueue("'t', queue => 'held'");
        let free = enqueue("'t', queue => 'free'");
        assert_eq!(
            one::<bool>("SELECT pdoflow.pause_queue('held')"),
            Some(true)
        );
        let claimed: Vec<String> = claim("10").into_iter().map(|(id, _)| id).collect();
        assert_eq!(claimed, vec![free]);
        run("SELECT pdoflow.set_key_limit('keyed', 1)");
        enqueue("'t', queue => 'keyed', concurrency_key => 'a'");
        enqueue("'t', queue => 'keyed', concurrency_key => 'a'");
        enqueue("'t', queue => 'keyed', concurrency_key => 'b'");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pdoflow.claim(10, ARRAY['keyed'])"),
            Some(2)
        );
    }

    #[pg_test]
    fn a_waiting_claim_polls_without_shared_memory() {
        let started = std::time::Instant::now();
        let claimed = one::<i64>(
            "SELECT count(*) FROM pdoflow.claim(1, ARRAY['nothing'], wait => '120 milliseconds')",
        );
        let waited = started.elapsed();
        assert_eq!(claimed, Some(0));
        assert!(
            waited >= std::time::Duration::from_millis(100)
                && waited < std::time::Duration::from_secs(5),
            "waited {waited:?}"
        );
    }
}
