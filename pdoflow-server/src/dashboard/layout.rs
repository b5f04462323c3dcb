//! The page every dashboard view sits in (navigation, who is signed in,
//! the flash region, the live feed's connection), and the small pieces of
//! markup the views share: times, states, JSON, live regions.

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::assets;
use super::session::Viewer;

/// The sections of the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Jobs,
    Queues,
    Postings,
    Workers,
    Schedules,
    None,
}

const SECTIONS: [(Section, &str, &str); 6] = [
    (Section::Overview, "Overview", "/dashboard/"),
    (Section::Jobs, "Jobs", "/dashboard/jobs"),
    (Section::Queues, "Queues", "/dashboard/queues"),
    (Section::Postings, "Postings", "/dashboard/postings"),
    (Section::Workers, "Workers", "/dashboard/workers"),
    (Section::Schedules, "Schedules", "/dashboard/schedules"),
];

/// htmx's settings: no inline styles (the Content-Security-Policy allows
/// none) and no `eval`.
const HTMX_CONFIG: &str = r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"historyCacheSize":0}"#;

/// A whole page. `viewer` is None on the login page.
pub fn page(viewer: Option<&Viewer>, title: &str, section: Section, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · pdoflow" }
                // No favicon request (and no 404 for it).
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(assets::path(assets::UPLOT_CSS));
                link rel="stylesheet" href=(assets::path(assets::DASHBOARD_CSS));
                script src=(assets::path(assets::HTMX)) defer {}
                script src=(assets::path(assets::HTMX_SSE)) defer {}
                script src=(assets::path(assets::UPLOT)) defer {}
                script src=(assets::path(assets::DASHBOARD_JS)) defer {}
            }
            @match viewer {
                Some(viewer) => body
                    hx-ext="sse"
                    sse-connect="/dashboard/events"
                    hx-headers=(format!(r#"{{"X-CSRF-Token": "{}"}}"#, viewer.csrf)) {
                    (chrome(Some(viewer), section, body))
                },
                None => body { (chrome(None, section, body)) },
            }
        }
    }
}

fn chrome(viewer: Option<&Viewer>, section: Section, body: Markup) -> Markup {
    html! {
        a.skip-link href="#content" { "Skip to content" }
        header.top {
            a.brand href="/dashboard/" { "pdoflow" }
            @if let Some(viewer) = viewer {
                nav aria-label="Sections" {
                    ul {
                        @for (each, label, href) in SECTIONS {
                            li {
                                @if each == section {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                    }
                }
                div.who {
                    span.live-status #live-status title="Live updates" { "connecting…" }
                    span { "Signed in as " strong #signed-in-role { (viewer.role.name) } }
                    form method="post" action="/dashboard/logout" {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button.link #sign-out type="submit" { "Sign out" }
                    }
                }
            }
        }
        div #flash role="status" aria-live="polite" {}
        main #content tabindex="-1" { (body) }
    }
}

/// A region that reloads itself (the same page, this region picked out of
/// it) when the live feed says something changed, and after an action.
/// Its htmx attributes are not inherited: the buttons inside post their
/// own requests, whose answers go to the flash region whole.
pub fn live_region(id: &str, url: &str, body: Markup) -> Markup {
    html! {
        div id=(id) .live-region
            hx-get=(url)
            hx-trigger="sse:changed, pdoflow:refresh from:body"
            hx-select=(format!("#{id}"))
            hx-swap="outerHTML"
            hx-disinherit="*" {
            (body)
        }
    }
}

/// A job state (or posting status, worker state) as a badge.
pub fn badge(state: &str) -> Markup {
    html! { span class=(format!("badge state-{}", css_word(state))) { (state) } }
}

/// `word` reduced to what a CSS class may hold.
fn css_word(word: &str) -> String {
    word.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A time, as "3 min ago" with the exact time in its `datetime` and title.
pub fn when(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        None => html! { span.muted { "—" } },
        Some(at) => {
            let exact = at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
            html! {
                time datetime=(at.to_rfc3339()) title=(exact) { (relative(at, Utc::now())) }
            }
        }
    }
}

/// How long ago (or how far ahead) `at` is from `now`, in the largest unit.
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let (amount, ahead) = (seconds.unsigned_abs(), seconds < 0);
    let text = match amount {
        0..=1 => return "just now".to_owned(),
        2..=59 => format!("{amount} s"),
        60..=3599 => format!("{} min", amount / 60),
        3600..=86_399 => format!("{} h", amount / 3600),
        _ => format!("{} d", amount / 86_400),
    };
    if ahead {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A duration in seconds, short.
pub fn age(seconds: f64) -> String {
    let seconds = seconds.max(0.0) as u64;
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min {} s", seconds / 60, seconds % 60),
        3600..=86_399 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

/// JSON, indented, in a `<pre>`.
pub fn json_block(id: &str, value: Option<&serde_json::Value>) -> Markup {
    match value {
        None => html! { p.muted id=(id) { "none" } },
        Some(value) => {
            let text = serde_json::to_string_pretty(value).unwrap_or_default();
            html! { pre.json id=(id) tabindex="0" { (text) } }
        }
    }
}

/// A flash message (the answer of an action).
pub fn flash(kind: FlashKind, message: &str) -> Markup {
    let class = match kind {
        FlashKind::Done => "flash flash-done",
        FlashKind::Refused => "flash flash-refused",
    };
    html! { p class=(class) { (message) } }
}

#[derive(Clone, Copy)]
pub enum FlashKind {
    Done,
    Refused,
}

/// A page that says what went wrong, in the dashboard's frame.
pub fn trouble(viewer: Option<&Viewer>, title: &str, message: &str) -> Markup {
    page(
        viewer,
        title,
        Section::None,
        html! {
            h1 { (title) }
            p.notice role="alert" { (message) }
            p { a href="/dashboard/" { "Back to the overview" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn relative_times() {
        let now = Utc::now();
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - Duration::seconds(30), now), "30 s ago");
        assert_eq!(relative(now - Duration::seconds(150), now), "2 min ago");
        assert_eq!(relative(now + Duration::hours(3), now), "in 3 h");
        assert_eq!(relative(now - Duration::days(9), now), "9 d ago");
    }

    #[test]
    fn states_become_css_words() {
        assert_eq!(css_word("running"), "running");
        assert_eq!(css_word("a b\"<"), "a-b--");
    }
}
