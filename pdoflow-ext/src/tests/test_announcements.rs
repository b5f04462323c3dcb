#[pgrx::pg_schema]
mod tests {
    use std::time::Duration;

    use crate::sweeper::announcements::{gap_after, BUSY_GAP, MIN_GAP};
    use pgrx::prelude::*;

    fn ms(millis: u64) -> Option<Duration> {
        Some(Duration::from_millis(millis))
    }

    #[pg_test]
    fn the_sweeper_announces_every_2_ms_at_most_while_commits_are_few() {
        assert_eq!(gap_after(1, None), MIN_GAP, "the first announcement");
        assert_eq!(gap_after(1, ms(2)), MIN_GAP);
        assert_eq!(gap_after(7, ms(2)), MIN_GAP, "3,500 commits a second");
        assert_eq!(gap_after(30, ms(1_000)), MIN_GAP, "after a quiet spell");
    }

    #[pg_test]
    fn the_sweeper_announces_every_10_ms_while_commits_stream_in() {
        assert_eq!(gap_after(8, ms(2)), BUSY_GAP, "4,000 commits a second");
        assert_eq!(gap_after(120, ms(10)), BUSY_GAP, "12,000 commits a second");
        assert_eq!(
            gap_after(30, ms(10)),
            MIN_GAP,
            "the stream slowed to 3,000 a second"
        );
    }
}
