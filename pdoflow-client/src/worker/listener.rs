//! The worker's LISTEN connection: wakes the worker loop when pdoflow
//! announces jobs in one of its queues. It reconnects by itself, and wakes
//! the loop after each reconnection, since announcements may have been missed.
//!
//! Where LISTEN does not work (a connection pooler in transaction mode
//! refuses it, say), it gives up once: it says so in a warning, sets the
//! worker's switch to waiting claims (`claim(..., wait => ...)`, see
//! `Loop::wait_claiming`) and ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use crate::backoff::Backoff;
use crate::config::ConnectionSettings;
use crate::error::Error;
use crate::NOTIFY_CHANNEL;

/// How one LISTEN connection ended.
enum Ended {
    /// The server closed it.
    Closed,
    /// Connecting, or the connection once it listened, failed.
    Failed(Error),
    /// The LISTEN statement (with the session settings sent with it) failed.
    Refused(Error),
}

/// Runs until the process ends, or until LISTEN proves unusable: then sets
/// `waiting_claims`, wakes the loop and returns. Call it in a task of its own.
pub async fn listen(
    settings: ConnectionSettings,
    queues: Option<Vec<String>>,
    wake: Arc<Notify>,
    waiting_claims: Arc<AtomicBool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut listened = false;
    loop {
        let started = tokio::time::Instant::now();
        match listen_once(&settings, queues.as_deref(), &wake, &mut listened).await {
            Ended::Closed => tracing::warn!("the LISTEN connection closed; reconnecting"),
            Ended::Failed(error) => {
                tracing::warn!(%error, "the LISTEN connection failed; reconnecting")
            }
            // The first LISTEN failing for any reason, or a later one the
            // server refuses (not a connection lost on the way, nor a
            // standby refusing it during a failover): LISTEN does not work
            // here.
            Ended::Refused(error)
                if !error.is_connection_lost()
                    && (!listened
                        || matches!(&error, Error::Postgres(postgres) if postgres.as_db_error().is_some())) =>
            {
                tracing::warn!(
                    %error,
                    "LISTEN does not work on this connection (a pooler in transaction mode?): \
                     idle claims wait inside the database instead (as with --no-listen)"
                );
                waiting_claims.store(true, Ordering::Release);
                wake.notify_one();
                return;
            }
            Ended::Refused(error) => {
                tracing::warn!(%error, "the LISTEN connection failed; reconnecting")
            }
        }
        // A connection that lasted a while was healthy: start backing off anew.
        if started.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn listen_once(
    settings: &ConnectionSettings,
    queues: Option<&[String]>,
    wake: &Notify,
    listened: &mut bool,
) -> Ended {
    let (client, mut connection) = match crate::connect::open(settings).await {
        Ok(opened) => opened,
        Err(error) => return Ended::Failed(error),
    };
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The session settings and LISTEN in one round trip; no
    // statement_timeout, which would only matter to a statement that runs,
    // and this connection only waits.
    let statement = match settings.session.statements(false) {
        Ok(settings) => format!("{settings}; LISTEN {NOTIFY_CHANNEL}"),
        Err(error) => return Ended::Failed(error),
    };
    {
        // The connection must be polled for LISTEN to complete.
        let listening = client.batch_execute(&statement);
        tokio::pin!(listening);
        loop {
            tokio::select! {
                result = &mut listening => match result {
                    Ok(()) => break,
                    Err(error) => return Ended::Refused(error.into()),
                },
                message = messages.next() => match message {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Ended::Refused(error.into()),
                    None => return Ended::Refused(Error::Invalid(
                        "the server closed the connection at LISTEN".into(),
                    )),
                },
            }
        }
    }
    *listened = true;
    wake.notify_one();
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(notification)) => {
                let wanted = queues.is_none_or(|queues| {
                    queues.iter().any(|queue| queue == notification.payload())
                });
                if wanted {
                    wake.notify_one();
                }
            }
            Ok(_) => {}
            Err(error) => return Ended::Failed(error.into()),
        }
    }
    // The client lives as long as the connection is listened to.
    drop(client);
    Ended::Closed
}
