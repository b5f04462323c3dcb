//! The extension as a DBA meets it: preloaded, configurable, and droppable
//! and re-creatable without leftovers.

use pdoflow_tests::{describe, sqlstate, TestDatabase};

#[tokio::test]
async fn the_library_is_preloaded_and_its_settings_are_registered() {
    let database = TestDatabase::create("lifecycle_settings").await;
    let client = database.connect().await;
    let preload: String = client
        .query_one("SHOW shared_preload_libraries", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        preload
            .split(',')
            .any(|library| library.trim() == "pdoflow"),
        "{preload}"
    );
    for (setting, default) in [
        ("pdoflow.max_claim", "1000"),
        ("pdoflow.retry_backoff_base", "1s"),
        ("pdoflow.retry_backoff_max", "1h"),
        ("pdoflow.retention", "7d"),
        ("pdoflow.worker_timeout", "1min"),
        ("pdoflow.sweep_lock_timeout", "1s"),
    ] {
        let value: String = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(value, default, "{setting}");
    }
    // Built-in defaults and who may change what (the test cluster itself
    // overrides pdoflow.database and pdoflow.sweep_interval).
    for (setting, boot_value, unit, context) in [
        ("pdoflow.database", "postgres", None, "postmaster"),
        ("pdoflow.sweep_interval", "1000", Some("ms"), "sighup"),
        ("pdoflow.retention", "604800", Some("s"), "superuser"),
        ("pdoflow.worker_timeout", "60", Some("s"), "superuser"),
        ("pdoflow.max_claim", "1000", None, "superuser"),
        ("pdoflow.shard", "-1", None, "superuser"),
    ] {
        let row = client
            .query_one(
                "SELECT boot_val, unit, context FROM pg_settings WHERE name = $1",
                &[&setting],
            )
            .await
            .unwrap_or_else(|error| panic!("{setting}: {}", describe(&error)));
        assert_eq!(row.get::<_, String>(0), boot_value, "{setting} default");
        assert_eq!(
            row.get::<_, Option<String>>(1).as_deref(),
            unit,
            "{setting} unit"
        );
        assert_eq!(row.get::<_, String>(2), context, "{setting} context");
    }
    let error = client
        .batch_execute("SET pdoflow.no_such_setting = 1")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42602", "misspelt settings are refused");
}

#[tokio::test]
async fn drop_and_create_again_leaves_nothing_behind() {
    let database = TestDatabase::create("lifecycle_drop").await;
    let client = database.connect().await;
    client
        .batch_execute("SELECT pdoflow.enqueue('t')")
        .await
        .unwrap();
    client
        .batch_execute("DROP EXTENSION pdoflow")
        .await
        .unwrap();
    // PostgreSQL creates the control file's schema but never counts it as part
    // of the extension, so the (empty) schema stays until DROP SCHEMA.
    let leftovers: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'pdoflow'::regnamespace)                   + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'pdoflow'::regnamespace)                   + (SELECT count(*) FROM pg_type WHERE typnamespace = 'pdoflow'::regnamespace)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        leftovers, 0,
        "no tables, views, functions or types outlive the extension"
    );
    client
        .batch_execute("CREATE EXTENSION pdoflow")
        .await
        .unwrap();
    let jobs: i64 = client
        .query_one("SELECT count(*) FROM pdoflow.jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(jobs, 0);
    client
        .batch_execute("SELECT pdoflow.enqueue('t')")
        .await
        .unwrap();
    client
        .batch_execute("DROP EXTENSION pdoflow; DROP SCHEMA pdoflow")
        .await
        .unwrap();
}

#[tokio::test]
async fn the_schema_belongs_to_the_extension_and_cannot_move() {
    let database = TestDatabase::create("lifecycle_schema").await;
    let client = database.connect().await;
    client
        .batch_execute("CREATE SCHEMA elsewhere")
        .await
        .unwrap();
    let error = client
        .batch_execute("ALTER EXTENSION pdoflow SET SCHEMA elsewhere")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "0A000", "pdoflow is not relocatable");
}

#[tokio::test]
async fn a_database_that_is_not_utf8_is_refused_clearly() {
    let database = TestDatabase::create("lifecycle_encoding").await;
    let client = database.connect().await;
    client
        .batch_execute("DROP DATABASE IF EXISTS pdoflow_it_latin1")
        .await
        .unwrap();
    client
        .batch_execute("CREATE DATABASE pdoflow_it_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        .await
        .unwrap();
    let latin1 = database.connect_to_database("pdoflow_it_latin1").await;
    let error = latin1
        .batch_execute("CREATE EXTENSION pdoflow")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "0A000");
    assert_eq!(
        describe(&error),
        "0A000: pdoflow needs a UTF8 database; this one is LATIN1"
    );
}

/// pdoflow's functions run as its owner and the sweeper calls them as a
/// superuser: it must not install into a schema another role controls.
#[tokio::test]
async fn a_schema_another_role_controls_is_refused() {
    let database = TestDatabase::create_empty("lifecycle_foreign_schema").await;
    let client = database.connect().await;
    client
        .batch_execute(
            "DROP ROLE IF EXISTS pdoflow_schema_squatter;
             CREATE ROLE pdoflow_schema_squatter;",
        )
        .await
        .unwrap();
    for (setup, expected) in [
        (
            "CREATE SCHEMA pdoflow AUTHORIZATION pdoflow_schema_squatter",
            "schema \"pdoflow\" is owned by role \"pdoflow_schema_squatter\"",
        ),
        (
            "CREATE SCHEMA pdoflow; GRANT CREATE ON SCHEMA pdoflow TO pdoflow_schema_squatter",
            "other roles may create objects in schema \"pdoflow\": pdoflow_schema_squatter",
        ),
        (
            "CREATE SCHEMA pdoflow; GRANT CREATE ON SCHEMA pdoflow TO PUBLIC",
            "other roles may create objects in schema \"pdoflow\": PUBLIC",
        ),
    ] {
        client.batch_execute(setup).await.unwrap();
        let error = client
            .batch_execute("CREATE EXTENSION pdoflow")
            .await
            .expect_err("installed into a schema another role controls");
        assert_eq!(sqlstate(&error), "42501", "{setup}: {}", describe(&error));
        assert!(
            describe(&error).contains(expected),
            "{setup}: {}",
            describe(&error)
        );
        client.batch_execute("DROP SCHEMA pdoflow").await.unwrap();
    }
    // A schema of the installing role's own, made beforehand, is fine.
    client
        .batch_execute("CREATE SCHEMA pdoflow; CREATE EXTENSION pdoflow;")
        .await
        .unwrap_or_else(|error| panic!("own schema: {}", describe(&error)));
    client
        .batch_execute(
            "DROP EXTENSION pdoflow; DROP SCHEMA pdoflow; DROP ROLE pdoflow_schema_squatter;",
        )
        .await
        .unwrap();
}
