//! The progress bar that `wait --progress` and `posting status --follow`
//! draw while they poll: jobs done out of a total (on stderr, and only on a
//! terminal).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often the following commands poll the database.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A bar when asked for, nothing otherwise.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    pub fn new(show: bool, done: u64, total: u64) -> Progress {
        Progress(show.then(|| {
            let bar = ProgressBar::new(total.max(1));
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} jobs done {msg}",
            ) {
                bar.set_style(style);
            }
            bar.set_position(done);
            bar
        }))
    }

    pub fn update(&self, done: u64, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total.max(1));
            bar.set_position(done);
        }
    }

    /// Leaves the bar complete, with `message` after it.
    pub fn finish(&self, message: &'static str) {
        if let Some(bar) = &self.0 {
            bar.finish_with_message(message);
        }
    }

    /// Leaves the bar where it stopped (giving up).
    pub fn abandon(&self) {
        if let Some(bar) = &self.0 {
            bar.abandon();
        }
    }
}
