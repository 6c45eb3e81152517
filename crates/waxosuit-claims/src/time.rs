//! Seconds-since-epoch helpers; JWT times are whole seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in seconds since the Unix epoch. A clock before 1970 reads as 0,
/// which makes every `nbf` in the future: failing closed.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An RFC 3339 date for a Unix time, for messages and tables.
pub fn human_date(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// "in 3days 2h", "5h ago", … relative to `now`, rounded to whole minutes
/// beyond an hour so tables stay short.
pub fn human_relative(secs: u64, now: u64) -> String {
    let (delta, future) = if secs >= now {
        (secs - now, true)
    } else {
        (now - secs, false)
    };
    let rounded = if delta > 3600 {
        delta - delta % 60
    } else {
        delta
    };
    let span = humantime::format_duration(Duration::from_secs(rounded));
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}
