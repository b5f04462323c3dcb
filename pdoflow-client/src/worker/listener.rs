//! The worker's LISTEN connection: wakes the worker loop when pdoflow
//! announces jobs in one of its queues. It reconnects by itself, and wakes
//! the loop after each reconnection, since announcements may have been missed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use crate::backoff::Backoff;
use crate::config::ConnectionSettings;
use crate::error::Result;
use crate::NOTIFY_CHANNEL;

/// Runs until the process ends; call it in a task of its own.
pub async fn listen(settings: ConnectionSettings, queues: Option<Vec<String>>, wake: Arc<Notify>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        let started = tokio::time::Instant::now();
        match listen_once(&settings, queues.as_deref(), &wake).await {
            Ok(()) => tracing::warn!("the LISTEN connection closed; reconnecting"),
            Err(error) => tracing::warn!(%error, "the LISTEN connection failed; reconnecting"),
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
) -> Result<()> {
    let (client, mut connection) = crate::connect::open(settings).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The session settings and LISTEN in one round trip; no
    // statement_timeout, which would only matter to a statement that runs,
    // and this connection only waits.
    let statement = format!(
        "{}; LISTEN {NOTIFY_CHANNEL}",
        settings.session.statements(false)?
    );
    {
        // The connection must be polled for LISTEN to complete.
        let listening = client.batch_execute(&statement);
        tokio::pin!(listening);
        loop {
            tokio::select! {
                result = &mut listening => { result?; break; }
                message = messages.next() => match message {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error.into()),
                    None => return Ok(()),
                },
            }
        }
    }
    wake.notify_one();
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(notification) = message? {
            let wanted = queues
                .is_none_or(|queues| queues.iter().any(|queue| queue == notification.payload()));
            if wanted {
                wake.notify_one();
            }
        }
    }
    // The client lives as long as the connection is listened to.
    drop(client);
    Ok(())
}
