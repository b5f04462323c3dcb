#[pgrx::pg_schema]
mod tests {
    use crate::tests::helpers::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn enqueue_applies_the_documented_defaults() {
        let id = enqueue("'send_email'");
        assert_eq!(state_of(&id), "queued");
        assert_eq!(job_field(&id, "task").as_deref(), Some("send_email"));
        assert_eq!(job_field(&id, "queue").as_deref(), Some("default"));
        assert_eq!(job_field(&id, "priority").as_deref(), Some("0"));
        assert_eq!(job_field(&id, "attempt").as_deref(), Some("0"));
        assert_eq!(job_field(&id, "max_attempts").as_deref(), Some("5"));
        assert_eq!(job_field(&id, "args").as_deref(), Some("{}"));
        assert_eq!(job_field(&id, "(run_at = now())").as_deref(), Some("true"));
        assert_eq!(
            job_field(&id, "(created_at = now())").as_deref(),
            Some("true")
        );
    }

    #[pg_test]
    fn enqueue_takes_every_option_by_name() {
        let id = enqueue(
            "task => 'report', args => '{\"day\": \"mon\"}', queue => 'reports', priority => -3, \
             run_at => now() + interval '1 hour', max_attempts => 2",
        );
        assert_eq!(job_field(&id, "args").as_deref(), Some(r#"{"day": "mon"}"#));
        assert_eq!(job_field(&id, "queue").as_deref(), Some("reports"));
        assert_eq!(job_field(&id, "priority").as_deref(), Some("-3"));
        assert_eq!(job_field(&id, "max_attempts").as_deref(), Some("2"));
        assert_eq!(
            job_field(&id, "(run_at = now() + interval '1 hour')").as_deref(),
            Some("true")
        );
    }

    #[pg_test]
    fn ids_are_time_ordered_version_7_uuids() {
        let first = enqueue("'t'");
        let second = enqueue("'t'");
        assert_eq!(&first[14..15], "7", "version nibble of {first}");
        assert!(first < second, "{first} should sort before {second}");
    }

    #[pg_test]
    fn args_are_stored_exactly() {
        // Anything that went through a float or a JSON library would lose digits or the scale.
        let exact = r#"{"big": 123456789012345678901234567890, "precise": 1.000000000000000000001, "scaled": 1.50}"#;
        let id = enqueue(&format!("'t', '{exact}'"));
        let same = format!(
            "SELECT args::text = '{exact}'::jsonb::text FROM pdoflow.jobs WHERE id = '{id}'"
        );
        assert_eq!(one::<bool>(&same), Some(true));
    }

    #[pg_test]
    fn enqueue_many_returns_ids_in_input_order() {
        let ids = one::<Vec<String>>(
            "SELECT array_agg(id::text ORDER BY ord) FROM pdoflow.enqueue_many('resize', \
             ARRAY['{\"n\": 1}', '{\"n\": 2}', '{\"n\": 3}']::jsonb[], queue => 'images') WITH ORDINALITY AS t(id, ord)",
        )
        .expect("no ids");
        assert_eq!(ids.len(), 3);
        for (position, id) in ids.iter().enumerate() {
            assert_eq!(
                job_field(id, "args->>'n'").as_deref(),
                Some((position + 1).to_string().as_str())
            );
            assert_eq!(job_field(id, "queue").as_deref(), Some("images"));
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "bulk ids follow input order");
    }

    #[pg_test]
    fn enqueue_many_of_nothing_is_nothing() {
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pdoflow.enqueue_many('t', '{}'::jsonb[])"),
            Some(0)
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pdoflow.enqueue_many('[]'::jsonb)"),
            Some(0)
        );
    }

    #[pg_test]
    fn enqueue_many_document_takes_per_job_options() {
        let ids = one::<Vec<String>>(
            r#"SELECT array_agg(id::text ORDER BY ord) FROM pdoflow.enqueue_many('[
                 {"task": "a"},
                 {"task": "b", "args": {"x": 1.50}, "queue": "q2", "priority": 7, "max_attempts": 1},
                 {"task": "c", "queue": null, "run_at": "2999-01-01 00:00:00+00"}
               ]'::jsonb) WITH ORDINALITY AS t(id, ord)"#,
        )
        .expect("no ids");
        assert_eq!(
            job_field(
                &ids[0],
                "task || '/' || queue || '/' || priority || '/' || max_attempts || '/' || args"
            )
            .as_deref(),
            Some("a/default/0/5/{}")
        );
        assert_eq!(
            job_field(
                &ids[1],
                "task || '/' || queue || '/' || priority || '/' || max_attempts || '/' || args"
            )
            .as_deref(),
            Some(r#"b/q2/7/1/{"x": 1.50}"#)
        );
        assert_eq!(job_field(&ids[2], "queue").as_deref(), Some("default"));
        assert_eq!(
            job_field(&ids[2], "run_at = '2999-01-01 00:00:00+00'").as_deref(),
            Some("true")
        );
    }

    #[pg_test]
    fn job_documents_treat_null_as_absent_and_keep_any_args_exactly() {
        let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        let huge = format!("1{}", "0".repeat(400));
        let document = format!(
            r#"[{{"task": "t", "priority": null, "max_attempts": null, "run_at": null, "queue": null,
                 "args": {{"deep": {deep}, "huge": {huge}, "exact": 1.000000000000000000001}}}}]"#
        );
        let id = one::<String>(&format!(
            "SELECT id::text FROM pdoflow.enqueue_many('{document}'::jsonb)"
        ))
        .expect("no id");
        assert_eq!(
            job_field(&id, "priority || '/' || max_attempts || '/' || queue").as_deref(),
            Some("0/5/default")
        );
        let same = format!(
            "SELECT args = ('{document}'::jsonb)->0->'args' FROM pdoflow.jobs WHERE id = '{id}'"
        );
        assert_eq!(one::<bool>(&same), Some(true));
        assert_eq!(
            job_field(&id, "args->>'huge'").as_deref(),
            Some(huge.as_str())
        );
    }

    #[pg_test]
    fn bad_enqueue_input_is_rejected_with_a_precise_error() {
        install_failure_probe();
        let cases = [
            ("SELECT pdoflow.enqueue(NULL)", "22004: task must not be NULL"),
            ("SELECT pdoflow.enqueue('')", "22023: task must not be empty"),
            ("SELECT pdoflow.enqueue(repeat('t', 129))", "22001: task is 129 characters long; the limit is 128"),
            ("SELECT pdoflow.enqueue(E'a\\nb')", "22023: task must not contain control characters, got \"a\\nb\""),
            ("SELECT pdoflow.enqueue('t', NULL)", "22004: args must not be NULL"),
            ("SELECT pdoflow.enqueue('t', queue => NULL)", "22004: queue must not be NULL"),
            ("SELECT pdoflow.enqueue('t', queue => ' q')", "22023: queue must not start or end with whitespace, got \" q\""),
            ("SELECT pdoflow.enqueue('t', priority => NULL)", "22004: priority must not be NULL"),
            ("SELECT pdoflow.enqueue('t', max_attempts => 0)", "22023: max_attempts must be at least 1, got 0"),
            ("SELECT pdoflow.enqueue('t', max_attempts => NULL)", "22004: max_attempts must not be NULL"),
            ("SELECT pdoflow.enqueue('t', run_at => 'infinity')", "22023: run_at must be a finite timestamp, got infinity"),
            ("SELECT pdoflow.enqueue_many('t', NULL)", "22004: args must not be NULL"),
            ("SELECT pdoflow.enqueue_many('t', ARRAY['{}', NULL]::jsonb[])", "22004: args[2] must not be NULL"),
            ("SELECT pdoflow.enqueue_many('t', ARRAY[['{}'], ['{}']]::jsonb[])", "22023: args must be a one-dimensional array, got 2 dimensions"),
            ("SELECT pdoflow.enqueue_many('', ARRAY['{}']::jsonb[])", "22023: task must not be empty"),
            ("SELECT pdoflow.enqueue_many(NULL::jsonb)", "22004: jobs must not be NULL"),
            ("SELECT pdoflow.enqueue_many('{}'::jsonb)", "22023: jobs must be a JSON array of job objects, got an object"),
            ("SELECT pdoflow.enqueue_many('[1]'::jsonb)", "22023: jobs[0] must be a JSON object, got the number 1"),
            ("SELECT pdoflow.enqueue_many('[{\"task\": \"t\"}, {}]'::jsonb)", "22004: jobs[1].task must not be NULL"),
            ("SELECT pdoflow.enqueue_many('[{\"task\": 5}]'::jsonb)", "22023: jobs[0].task must be a string, got the number 5"),
            ("SELECT pdoflow.enqueue_many('[{\"task\": \"t\", \"queue\": \"\"}]'::jsonb)", "22023: jobs[0].queue must not be empty"),
            ("SELECT pdoflow.enqueue_many('[{\"task\": \"t\", \"priority\": \"high\"}]'::jsonb)", "22023: jobs[0].priority must be an integer, got the string \"high\""),
            ("SELECT pdoflow.enqueue_many('[{\"task\": \"t\", \"priority\": 1.5}]'::jsonb)", "22023: jobs[0].priority must be an integer, got the number 1.5"),
            ("SELECT pdoflow.enqueue_many('[{\"task\": \"t\", \"priority\": 3000000000}]'::jsonb)", "22023: jobs[0].priority must be between -2147483648 and 2147483647, got 3000000000"),
            ("SELECT pdoflow.enqueue_many('[{\"task\": \"t\", \"priority\": -3000000000}]'::jsonb)", "22023: jobs[0].priority must be between -2147483648 and 2147483647, got -3000000000"),
            ("SELECT pdoflow.enqueue_many('[{\"task\": \"t\"}, {\"task\": \"t\", \"max_attempts\": 0}]'::jsonb)", "22023: jobs[1].max_attempts must be at least 1, got 0"),
            ("SELECT pdoflow.enqueue_many('[{\"task\": \"t\", \"run_at\": \"soonish\"}]'::jsonb)", "22007: jobs[0].run_at is not a valid timestamp: \"soonish\""),
            ("SELECT pdoflow.enqueue_many('[{\"task\": \"t\", \"run_at\": \"-infinity\"}]'::jsonb)", "22023: jobs[0].run_at must be a finite timestamp, got -infinity"),
            ("SELECT pdoflow.enqueue_many('[{\"task\": \"t\", \"tsak\": 1}]'::jsonb)", "22023: jobs[0] has an unknown key \"tsak\""),
        ];
        for (sql, expected) in cases {
            assert_eq!(failure(sql), expected, "{sql}");
        }
    }
}
