//! Per-task enqueue privileges (`pdoflow.grant_task` / `revoke_task`): once a
//! task has a grant, only roles with a granted role's privileges, and
//! pdoflow_admin members, may enqueue it, in every form; every job records
//! who enqueued it.

use pdoflow_tests::{describe, sqlstate, TestDatabase};
use tokio_postgres::Client;

/// Login roles for one test (roles are cluster-wide: made afresh each run,
/// named after the test so that tests running at once keep apart):
/// `<label>_ops` is granted tasks, `<label>_ops_member` is one of its
/// members, `<label>_app` a plain producer and `<label>_boss` an admin.
struct Logins {
    ops: String,
    member: String,
    app: String,
    boss: String,
}

async fn make_logins(superuser: &Client, label: &str) -> Logins {
    let logins = Logins {
        ops: format!("{label}_ops"),
        member: format!("{label}_ops_member"),
        app: format!("{label}_app"),
        boss: format!("{label}_boss"),
    };
    for login in [&logins.member, &logins.ops, &logins.app, &logins.boss] {
        superuser
            .batch_execute(&format!("DROP ROLE IF EXISTS {login}"))
            .await
            .unwrap_or_else(|error| panic!("drop {login}: {}", describe(&error)));
    }
    for (login, group) in [
        (&logins.ops, "pdoflow_producer"),
        (&logins.member, logins.ops.as_str()),
        (&logins.app, "pdoflow_producer"),
        (&logins.boss, "pdoflow_admin"),
    ] {
        superuser
            .batch_execute(&format!("CREATE ROLE {login} LOGIN IN ROLE {group}"))
            .await
            .unwrap_or_else(|error| panic!("create {login}: {}", describe(&error)));
    }
    logins
}

/// Every way to enqueue a job of `task`.
fn every_form(task: &str) -> Vec<String> {
    vec![
        format!("SELECT pdoflow.enqueue('{task}')"),
        format!("SELECT pdoflow.enqueue('{task}', run_at => now() + interval '1 hour')"),
        format!("SELECT pdoflow.enqueue('{task}', posting => pdoflow.create_posting('p'))"),
        format!("SELECT pdoflow.enqueue_many('{task}', ARRAY['{{}}', '{{}}']::jsonb[])"),
        format!(r#"SELECT pdoflow.enqueue_many('[{{"task": "other"}}, {{"task": "{task}"}}]')"#),
        format!(
            r#"SELECT pdoflow.enqueue_many(('[{{"task": "{task}", "posting": "'
                                            || pdoflow.create_posting('q') || '"}}]')::jsonb)"#
        ),
        format!(
            r#"SELECT pdoflow.submit_dag('{{"nodes": [{{"name": "a", "task": "other"}},
                                                     {{"name": "b", "task": "{task}", "after": ["a"]}}]}}')"#
        ),
        format!(
            r#"SELECT pdoflow.submit_dag('{{"nodes": [{{"name": "outer", "dag": {{"nodes": [{{"name": "inner", "task": "{task}"}}]}}}}]}}')"#
        ),
    ]
}

async fn jobs_of(db: &Client, task: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pdoflow.jobs WHERE task = $1",
        &[&task],
    )
    .await
    .unwrap_or_else(|error| panic!("count: {}", describe(&error)))
    .get(0)
}

#[tokio::test]
async fn a_granted_task_is_enqueued_only_by_its_grantees_and_admins_in_every_form() {
    let database = TestDatabase::create("task_grants").await;
    let superuser = database.connect().await;
    let logins = make_logins(&superuser, "pdoflow_grants").await;
    let ops = database.connect_as(&logins.ops).await;
    let member = database.connect_as(&logins.member).await;
    let app = database.connect_as(&logins.app).await;
    let boss = database.connect_as(&logins.boss).await;

    // Before any grant, every producer may enqueue the task.
    for sql in every_form("shell") {
        app.batch_execute(&sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {}", describe(&error)));
    }
    let open = jobs_of(&superuser, "shell").await;

    // Only admins grant and revoke.
    let refused = app
        .batch_execute("SELECT pdoflow.grant_task('shell', 'pdoflow_grants_app')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&refused), "42501");
    let granted: bool = boss
        .query_one(
            "SELECT pdoflow.grant_task('shell', 'pdoflow_grants_ops')",
            &[],
        )
        .await
        .unwrap_or_else(|error| panic!("grant_task: {}", describe(&error)))
        .get(0);
    assert!(granted);
    let again: bool = boss
        .query_one(
            "SELECT pdoflow.grant_task('shell', 'pdoflow_grants_ops')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!again, "a second grant changes nothing");
    let listed: Vec<(String, String, String)> = app
        .query(
            "SELECT task, grantee::text, granted_by FROM pdoflow.task_grants",
            &[],
        )
        .await
        .unwrap_or_else(|error| panic!("task_grants: {}", describe(&error)))
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        listed,
        vec![(
            "shell".to_owned(),
            "pdoflow_grants_ops".to_owned(),
            "pdoflow_grants_boss".to_owned()
        )]
    );

    // A producer without the grant: every form refused (42501, naming the
    // task and the role), nothing written. Through SET ROLE too.
    superuser
        .batch_execute("SET ROLE pdoflow_grants_app")
        .await
        .unwrap();
    for db in [&app, &superuser] {
        for sql in every_form("shell") {
            let error = db.batch_execute(&sql).await.unwrap_err();
            let db_error = error
                .as_db_error()
                .unwrap_or_else(|| panic!("{sql}: {error}"));
            assert_eq!(
                db_error.code().code(),
                "42501",
                "{sql}: {}",
                describe(&error)
            );
            assert!(
                db_error.message().contains("\"shell\"")
                    && db_error.message().contains("\"pdoflow_grants_app\""),
                "{sql}: {}",
                db_error.message()
            );
        }
    }
    superuser.batch_execute("RESET ROLE").await.unwrap();
    assert_eq!(jobs_of(&superuser, "shell").await, open);
    // Other tasks stay open to it.
    app.batch_execute("SELECT pdoflow.enqueue('other')")
        .await
        .unwrap();

    // The grantee, a member of the grantee, an admin and a superuser may.
    for db in [&ops, &member, &boss, &superuser] {
        for sql in every_form("shell") {
            db.batch_execute(&sql)
                .await
                .unwrap_or_else(|error| panic!("{sql}: {}", describe(&error)));
        }
    }
    assert_eq!(
        jobs_of(&superuser, "shell").await,
        open * 5,
        "four more rounds of every form"
    );

    // Revoking the last grant opens the task to every producer again.
    let revoked: bool = boss
        .query_one(
            "SELECT pdoflow.revoke_task('shell', 'pdoflow_grants_ops')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(revoked);
    let revoked_again: bool = boss
        .query_one(
            "SELECT pdoflow.revoke_task('shell', 'pdoflow_grants_ops')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!revoked_again);
    app.batch_execute("SELECT pdoflow.enqueue('shell')")
        .await
        .unwrap_or_else(|error| panic!("after revoke_task: {}", describe(&error)));
}

#[tokio::test]
async fn a_grant_or_revoke_applies_to_sessions_that_enqueued_before() {
    let database = TestDatabase::create("task_grants_sessions").await;
    let superuser = database.connect().await;
    let logins = make_logins(&superuser, "pdoflow_grants_sessions").await;
    let app = database.connect_as(&logins.app).await;
    let ops = database.connect_as(&logins.ops).await;

    // Both sessions have looked at the task (and keep what they saw).
    app.batch_execute("SELECT pdoflow.enqueue('deploy')")
        .await
        .unwrap();
    ops.batch_execute("SELECT pdoflow.enqueue('deploy')")
        .await
        .unwrap();
    superuser
        .batch_execute("SELECT pdoflow.grant_task('deploy', 'pdoflow_grants_sessions_ops')")
        .await
        .unwrap();
    let error = app
        .batch_execute("SELECT pdoflow.enqueue('deploy')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42501", "{}", describe(&error));
    ops.batch_execute("SELECT pdoflow.enqueue('deploy')")
        .await
        .unwrap();

    // A grant made in an open transaction does not apply until it commits.
    superuser
        .batch_execute("BEGIN; SELECT pdoflow.grant_task('deploy', 'pdoflow_grants_sessions_app');")
        .await
        .unwrap();
    assert_eq!(
        sqlstate(
            &app.batch_execute("SELECT pdoflow.enqueue('deploy')")
                .await
                .unwrap_err()
        ),
        "42501"
    );
    superuser.batch_execute("COMMIT").await.unwrap();
    app.batch_execute("SELECT pdoflow.enqueue('deploy')")
        .await
        .unwrap_or_else(|error| panic!("after the grant: {}", describe(&error)));
}

#[tokio::test]
async fn every_job_records_who_enqueued_it_and_keeps_it_in_history() {
    let database = TestDatabase::create("task_grants_enqueued_by").await;
    let superuser = database.connect().await;
    let logins = make_logins(&superuser, "pdoflow_grants_by").await;
    let app = database.connect_as(&logins.app).await;
    for sql in every_form("recorded") {
        app.batch_execute(&sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {}", describe(&error)));
    }
    superuser
        .batch_execute(
            "SET ROLE pdoflow_grants_by_ops; SELECT pdoflow.enqueue('recorded', queue => 'as_ops'); RESET ROLE;",
        )
        .await
        .unwrap();
    let by: Vec<(String, Option<String>)> = superuser
        .query(
            "SELECT DISTINCT queue, enqueued_by FROM pdoflow.jobs ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        by,
        vec![
            (
                "as_ops".to_owned(),
                Some("pdoflow_grants_by_ops".to_owned())
            ),
            (
                "default".to_owned(),
                Some("pdoflow_grants_by_app".to_owned())
            ),
        ]
    );

    // Kept when a job ends, and when it is retried.
    superuser
        .batch_execute(
            "SELECT pdoflow.finish(c.id, c.attempt, error => 'no')
             FROM pdoflow.claim(1000, queues => ARRAY['as_ops'], worker => 'w') AS c;
             SELECT pdoflow.cancel(id) FROM pdoflow.jobs WHERE queue = 'as_ops' AND state = 'queued';",
        )
        .await
        .unwrap();
    let history: Option<String> = superuser
        .query_one(
            "SELECT enqueued_by FROM pdoflow.finished_jobs WHERE queue = 'as_ops'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(history.as_deref(), Some("pdoflow_grants_by_ops"));
    superuser
        .batch_execute("SELECT pdoflow.retry(id) FROM pdoflow.jobs WHERE queue = 'as_ops'")
        .await
        .unwrap();
    let retried: Option<String> = superuser
        .query_one(
            "SELECT enqueued_by FROM pdoflow.active_jobs WHERE queue = 'as_ops'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(retried.as_deref(), Some("pdoflow_grants_by_ops"));
}

#[tokio::test]
async fn bad_grants_are_named() {
    let database = TestDatabase::create("task_grants_bad_input").await;
    let db = database.connect().await;
    for (sql, code, message) in [
        (
            "SELECT pdoflow.grant_task(NULL, 'postgres')",
            "22004",
            "task must not be NULL",
        ),
        (
            "SELECT pdoflow.grant_task('', 'postgres')",
            "22023",
            "task must not be empty",
        ),
        (
            "SELECT pdoflow.grant_task('t', NULL)",
            "22004",
            "grantee must not be NULL",
        ),
        (
            "SELECT pdoflow.grant_task('t', '-')",
            "22023",
            "grantee must be a role",
        ),
        (
            "SELECT pdoflow.revoke_task('t', NULL)",
            "22004",
            "grantee must not be NULL",
        ),
        (
            "SELECT pdoflow.grant_task('t', 'no_such_role_anywhere')",
            "42704",
            "no_such_role_anywhere",
        ),
    ] {
        let error = db.batch_execute(sql).await.unwrap_err();
        let db_error = error
            .as_db_error()
            .unwrap_or_else(|| panic!("{sql}: {error}"));
        assert_eq!(
            db_error.code().code(),
            code,
            "{sql}: {}",
            db_error.message()
        );
        assert!(
            db_error.message().contains(message),
            "{sql}: {}",
            db_error.message()
        );
    }
    let grants: i64 = db
        .query_one("SELECT count(*) FROM pdoflow.task_grants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(grants, 0);
}

/// ANALYZE, CREATE INDEX, REINDEX, REFRESH MATERIALIZED VIEW run a table
/// owner's functions for whoever started them (autovacuum's superuser,
/// say): there, the session's role says nothing about who asks for a job,
/// so a granted task is refused.
#[tokio::test]
async fn a_granted_task_is_refused_inside_a_security_restricted_operation() {
    let database = TestDatabase::create("task_grants_restricted").await;
    let superuser = database.connect().await;
    let logins = make_logins(&superuser, "pdoflow_grants_sro").await;
    superuser
        .batch_execute("SELECT pdoflow.grant_task('guarded', 'pdoflow_admin')")
        .await
        .unwrap();
    let app = database.connect_as(&logins.app).await;
    // The producer's own table, with an index expression that enqueues.
    superuser
        .batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {}", logins.app))
        .await
        .unwrap();
    // An index expression that enqueues the task named in another table.
    app.batch_execute(
        "CREATE TABLE public.bait_task (task text);
         INSERT INTO public.bait_task VALUES ('other');
         CREATE FUNCTION public.sneaky(x integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$
         BEGIN PERFORM pdoflow.enqueue((SELECT task FROM public.bait_task)); RETURN x; END $$;
         CREATE TABLE public.bait (x integer);
         INSERT INTO public.bait VALUES (1);
         CREATE INDEX bait_sneaky ON public.bait (public.sneaky(x));
         UPDATE public.bait_task SET task = 'guarded';",
    )
    .await
    .unwrap_or_else(|error| panic!("the producer's table: {}", describe(&error)));
    // The producer itself may not.
    let error = app
        .batch_execute("REINDEX TABLE public.bait")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42501", "{}", describe(&error));

    // Nor through a superuser's maintenance, which runs the owner's
    // functions in a security-restricted operation.
    for maintenance in [
        "REINDEX TABLE public.bait",
        "ANALYZE public.bait",
        "CREATE INDEX bait_again ON public.bait (public.sneaky(x))",
    ] {
        let error = superuser.batch_execute(maintenance).await.unwrap_err();
        let db_error = error
            .as_db_error()
            .unwrap_or_else(|| panic!("{maintenance}: {error}"));
        assert_eq!(
            db_error.code().code(),
            "42501",
            "{maintenance}: {}",
            db_error.message()
        );
        assert!(
            db_error.message().contains("security-restricted operation"),
            "{maintenance}: {}",
            db_error.message()
        );
    }
    assert_eq!(jobs_of(&superuser, "guarded").await, 0);
    // A task without grants may still be enqueued there.
    superuser
        .batch_execute("UPDATE public.bait_task SET task = 'other'; REINDEX TABLE public.bait;")
        .await
        .unwrap_or_else(|error| panic!("an open task: {}", describe(&error)));
    superuser
        .batch_execute(&format!(
            "DROP TABLE public.bait, public.bait_task; DROP FUNCTION public.sneaky(integer);
             REVOKE CREATE ON SCHEMA public FROM {};",
            logins.app
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn job_is_granted_says_whether_a_jobs_enqueuer_holds_a_grant_now() {
    let database = TestDatabase::create("task_grants_job_is_granted").await;
    let superuser = database.connect().await;
    let logins = make_logins(&superuser, "pdoflow_grants_jig").await;
    let app = database.connect_as(&logins.app).await;
    let member = database.connect_as(&logins.member).await;
    let boss = database.connect_as(&logins.boss).await;
    async fn enqueue(db: &Client) -> uuid::Uuid {
        db.query_one("SELECT pdoflow.enqueue('shell')", &[])
            .await
            .unwrap_or_else(|error| panic!("enqueue: {}", describe(&error)))
            .get(0)
    }
    // Enqueued while shell had no grant: never granted.
    let before_grant = enqueue(&app).await;
    superuser
        .batch_execute(&format!(
            "SELECT pdoflow.grant_task('shell', '{}')",
            logins.ops
        ))
        .await
        .unwrap();
    let by_member = enqueue(&member).await;
    let by_admin = enqueue(&boss).await;
    let granted = |id: uuid::Uuid| {
        let superuser = &superuser;
        async move {
            superuser
                .query_one("SELECT pdoflow.job_is_granted($1)", &[&id])
                .await
                .unwrap_or_else(|error| panic!("job_is_granted: {}", describe(&error)))
                .get::<_, bool>(0)
        }
    };
    assert!(
        !granted(before_grant).await,
        "enqueued by a role without a grant"
    );
    assert!(granted(by_member).await, "a member of the grantee");
    assert!(granted(by_admin).await, "an admin");
    assert!(!granted(uuid::Uuid::nil()).await, "no such job");
    // Pre-0.4.0 jobs, without an enqueuer, are not granted.
    superuser
        .batch_execute(&format!(
            "UPDATE pdoflow.active_jobs SET enqueued_by = NULL WHERE id = '{by_admin}'"
        ))
        .await
        .unwrap();
    assert!(!granted(by_admin).await, "no enqueuer recorded");
    // Revoked: the member's job is not granted any more.
    superuser
        .batch_execute(&format!(
            "SELECT pdoflow.revoke_task('shell', '{}')",
            logins.ops
        ))
        .await
        .unwrap();
    assert!(!granted(by_member).await, "after revoke_task");
}
