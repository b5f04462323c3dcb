//! The live feed: one database connection serves every browser.
//!
//! It `LISTEN`s on `pdoflow` (jobs becoming available) and samples the
//! counters of `pdoflow.stats` (every claim, finish, retry, cancel and
//! expired lease moves one) once a second while browsers watch, every ten
//! seconds otherwise (for the throughput chart). When either shows a
//! change, at most once a second, it reads the overview anew and pushes
//! three server-sent events to every browser:
//!
//! - `overview`: the overview's HTML, swapped in as it is;
//! - `throughput`: the chart's data (JSON);
//! - `changed`: a number; each page's live regions reload themselves on
//!   it (as the signed-in role, so each sees what its privileges allow).
//!
//! With no browser watching, it reads nothing but the counters. The
//! overview is read as the service role (`--service-role`) and shown to
//! every signed-in user.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use maud::{Markup, PreEscaped};
use tokio::sync::{broadcast, watch, Notify};
use tokio::time::Instant;
use tokio_postgres::Client;

use super::overview;
use super::session::Viewer;
use super::throughput::{first_uuid_v7_of, Throughput, Totals, MINUTES};
use crate::pool::{self, Connector, Notifications};
use crate::sql_error;
use crate::state::AppState;

/// How often the counters are read while browsers watch.
const WATCHED_TICK: Duration = Duration::from_secs(1);
/// How often they are read when nobody watches (the chart's minutes).
const IDLE_TICK: Duration = Duration::from_secs(10);
/// An overview is pushed at least this often while browsers watch (jobs
/// falling due and waiting times change without any counter moving).
const REFRESH: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One server-sent event.
#[derive(Clone)]
struct LiveEvent {
    name: &'static str,
    data: Arc<str>,
    /// Only for browsers whose role may read `pdoflow.workers`.
    admins_only: bool,
}

impl LiveEvent {
    fn everyone(name: &'static str, data: Arc<str>) -> LiveEvent {
        LiveEvent {
            name,
            data,
            admins_only: false,
        }
    }
}

/// The feed's state, shared by the loop and the browsers' streams.
pub struct Live {
    events: broadcast::Sender<LiveEvent>,
    /// The last overview and chart pushed, for browsers that arrive.
    latest: Mutex<Latest>,
    viewers: AtomicUsize,
    /// Wakes the loop: a browser arrived, or an action changed something.
    wake: Notify,
    changes: AtomicU64,
}

#[derive(Default)]
struct Latest {
    overview: Option<Arc<str>>,
    throughput: Option<Arc<str>>,
    workers: Option<Arc<str>>,
    pushed_at: Option<Instant>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            events: broadcast::channel(16).0,
            latest: Mutex::new(Latest::default()),
            viewers: AtomicUsize::new(0),
            wake: Notify::new(),
            changes: AtomicU64::new(0),
        }
    }
}

/// Counts a browser as watching while it lives.
struct Watching(Arc<Live>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.viewers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Live {
    fn latest(&self) -> MutexGuard<'_, Latest> {
        self.latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The overview last pushed, the workers' card and the chart's data
    /// (an empty chart before the first reading).
    pub fn latest_overview(&self) -> (Option<Markup>, Option<Markup>, String) {
        let latest = self.latest();
        (
            latest
                .overview
                .as_ref()
                .map(|html| PreEscaped(html.to_string())),
            latest
                .workers
                .as_ref()
                .map(|html| PreEscaped(html.to_string())),
            latest
                .throughput
                .as_ref()
                .map(|json| json.to_string())
                .unwrap_or_else(|| r#"{"t":[],"enqueued":[],"succeeded":[],"failed":[]}"#.into()),
        )
    }

    /// Something changed that the counters may not show yet (an action of
    /// the dashboard's): read and push soon.
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Counts a browser in. It gets the latest overview at once; only when
    /// that is missing or old (nobody watched for a while) is a new one
    /// read, for everyone.
    fn watching(self: &Arc<Live>) -> Watching {
        self.viewers.fetch_add(1, Ordering::AcqRel);
        let fresh = self
            .latest()
            .pushed_at
            .is_some_and(|at| at.elapsed() < WATCHED_TICK * 2);
        if !fresh {
            self.wake.notify_one();
        }
        Watching(Arc::clone(self))
    }

    fn watched(&self) -> bool {
        self.viewers.load(Ordering::Acquire) > 0
    }

    fn push(
        &self,
        overview: String,
        throughput: String,
        workers: Option<(i64, i64)>,
        changed: bool,
    ) {
        let overview: Arc<str> = overview.into();
        let throughput: Arc<str> = throughput.into();
        let workers: Arc<str> = overview::render_workers(workers).into_string().into();
        {
            let mut latest = self.latest();
            latest.overview = Some(Arc::clone(&overview));
            latest.throughput = Some(Arc::clone(&throughput));
            latest.workers = Some(Arc::clone(&workers));
            latest.pushed_at = Some(Instant::now());
        }
        let mut events = vec![
            LiveEvent::everyone("overview", overview),
            LiveEvent::everyone("throughput", throughput),
            LiveEvent {
                name: "workers",
                data: workers,
                admins_only: true,
            },
        ];
        if changed {
            let changes = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
            events.push(LiveEvent::everyone("changed", changes.to_string().into()));
        }
        for event in events {
            // No receiver (nobody watching) is not an error.
            let _ = self.events.send(event);
        }
    }
}

/// `GET /dashboard/events`: the feed, as server-sent events, until the
/// browser leaves, its token expires or the server stops.
pub async fn events(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    // The role must be usable and may read the figures; whether it may
    // read the workers registry decides which events it gets.
    let sight = match overview::sight(&state, &viewer).await {
        Ok(sight) if sight.figures => sight,
        Ok(_) => {
            return (
                StatusCode::FORBIDDEN,
                "this role may not read pdoflow.queues and pdoflow.stats",
            )
                .into_response()
        }
        Err(problem) => return problem.into_response(),
    };
    let live = &state.dashboard.live;
    let watching = live.watching();
    let receiver = live.events.subscribe();
    let first: Vec<LiveEvent> = {
        let latest = live.latest();
        [
            ("overview", latest.overview.clone(), false),
            ("throughput", latest.throughput.clone(), false),
            ("workers", latest.workers.clone(), true),
        ]
        .into_iter()
        .filter_map(|(name, data, admins_only)| {
            data.map(|data| LiveEvent {
                name,
                data,
                admins_only,
            })
        })
        .collect()
    };
    let later = futures_util::stream::unfold(
        (receiver, watching),
        |(mut receiver, watching)| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => return Some((event, (receiver, watching))),
                    // A slow browser missed some: the next ones say it all.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    let workers = sight.workers;
    let mut stopping = state.stopping.clone();
    let expires_in = viewer.role.expires_at.map(|at| {
        Duration::from_secs(u64::try_from(at - chrono::Utc::now().timestamp()).unwrap_or(0))
    });
    let ended = async move {
        let expired = async {
            match expires_in {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stopping.wait_for(|stopped| *stopped) => {}
            _ = expired => {}
        }
    };
    let stream = futures_util::stream::iter(first)
        .chain(later)
        .filter(move |event| std::future::ready(workers || !event.admins_only))
        .map(|event| Ok::<_, Infallible>(Event::default().event(event.name).data(&*event.data)))
        .take_until(ended);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    // Proxies (nginx) must pass events on as they come.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The feed's loop until `stop` turns true, connecting again (with
/// backoff) when its connection breaks.
pub async fn run(
    live: Arc<Live>,
    connector: Connector,
    service_role: Option<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(250);
    let mut throughput = Throughput::default();
    let mut seeded = false;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let served = serve(
            &live,
            &connector,
            service_role.as_deref(),
            &mut throughput,
            &mut seeded,
            &mut stop,
        )
        .await;
        match served {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!("dashboard live feed: {error}; connecting again in {backoff:?}")
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(250);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: Ok when stopped, Err when the connection failed.
async fn serve(
    live: &Live,
    connector: &Connector,
    service_role: Option<&str>,
    throughput: &mut Throughput,
    seeded: &mut bool,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let describe = |error: tokio_postgres::Error| sql_error::describe(&error);
    let connected = pool::service_connection(connector, service_role).await?;
    let client = connected.client;
    let mut notifications: Notifications = connected.notifications;
    client
        .batch_execute("LISTEN pdoflow")
        .await
        .map_err(describe)?;
    if !*seeded {
        match seed(&client).await {
            Ok(rows) => throughput.seed(rows),
            Err(error) => tracing::warn!(
                "dashboard live feed: the last hour's throughput could not be read ({}); the chart starts empty",
                describe(error)
            ),
        }
        *seeded = true;
    }
    tracing::debug!("dashboard live feed connected");
    let mut last_totals: Option<Totals> = None;
    // Something may have changed since the last push (a notification, a
    // counter that moved, an action of the dashboard's).
    let mut dirty = true;
    let mut last_push: Option<Instant> = None;
    let mut next_sample = Instant::now();
    loop {
        tokio::select! {
            notification = notifications.recv() => match notification {
                // Notifications only mark the feed dirty (a burst of them
                // costs no reads); the next sample, at most a second
                // away while browsers watch, reads.
                Some(_) => {
                    dirty = true;
                    while notifications.try_recv().is_ok() {}
                    continue;
                }
                None => return Err("the connection closed".into()),
            },
            // A browser arrived, or an action changed something: now.
            _ = live.wake.notified() => {
                dirty = true;
                next_sample = Instant::now();
            }
            _ = tokio::time::sleep_until(next_sample) => {}
            _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
        }
        if Instant::now() < next_sample {
            continue;
        }
        let watched = live.watched();
        next_sample = Instant::now() + if watched { WATCHED_TICK } else { IDLE_TICK };
        let counters = match overview::read_totals(&client).await {
            Ok(read) => read,
            Err(error) => {
                lost_or_logged(error)?;
                continue;
            }
        };
        let totals = counters.0;
        throughput.sample(totals, chrono::Utc::now().timestamp());
        if last_totals != Some(totals) {
            dirty = true;
            last_totals = Some(totals);
        }
        if !watched {
            continue;
        }
        let stale = last_push.is_none_or(|at| at.elapsed() >= REFRESH);
        if !dirty && !stale {
            continue;
        }
        let snapshot = match overview::read(&client, counters).await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                lost_or_logged(error)?;
                continue;
            }
        };
        let series = throughput.series(chrono::Utc::now().timestamp());
        let html = overview::render(&snapshot, &series).into_string();
        let json = serde_json::to_string(&series).unwrap_or_default();
        // Pages reload their live regions on `changed`: only when
        // something did change, not on the periodic refresh (which only
        // renews the overview's ages and the chart).
        live.push(html, json, snapshot.workers, dirty);
        dirty = false;
        last_push = Some(Instant::now());
    }
}

/// A failed statement of the feed: the connection's loss ends it (Err:
/// connect again); an error the database raised is logged and the feed
/// goes on (it tries again at its next sample).
fn lost_or_logged(error: tokio_postgres::Error) -> Result<(), String> {
    if error.as_db_error().is_none() {
        return Err(sql_error::describe(&error));
    }
    tracing::warn!(
        "dashboard live feed: {} (the overview is not updated until this is mended)",
        sql_error::describe(&error)
    );
    Ok(())
}

/// The last hour's jobs per minute, from the jobs themselves: created (the
/// primary keys find them: ids are UUIDv7) and finished (an index on
/// `finished_at`). Bounded by a 5-second statement timeout.
async fn seed(client: &Client) -> Result<Vec<(i64, i64, i64, i64)>, tokio_postgres::Error> {
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let from_ms = now_ms.saturating_sub(u64::try_from(MINUTES * 60_000).unwrap_or(0));
    let first_id = first_uuid_v7_of(from_ms);
    let from = chrono::DateTime::from_timestamp_millis(i64::try_from(from_ms).unwrap_or(0))
        .unwrap_or_default();
    client
        .batch_execute("BEGIN READ ONLY; SET LOCAL statement_timeout = '5s'")
        .await?;
    let rows = client
        .query(
            "SELECT extract(epoch FROM minute)::int8, sum(enqueued)::int8,
                    sum(succeeded)::int8, sum(failed)::int8
             FROM (SELECT date_trunc('minute', created_at) AS minute,
                          1 AS enqueued, 0 AS succeeded, 0 AS failed
                   FROM pdoflow.jobs
                   WHERE id >= $1 AND created_at >= $2
                   UNION ALL
                   SELECT date_trunc('minute', finished_at), 0,
                          (state = 'succeeded')::int, (state = 'failed')::int
                   FROM pdoflow.jobs
                   WHERE finished_at >= $2) AS seen
             GROUP BY 1",
            &[&first_id, &from],
        )
        .await;
    let ended = client.batch_execute("ROLLBACK").await;
    let rows = rows?;
    ended?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ))
        })
        .collect()
}
