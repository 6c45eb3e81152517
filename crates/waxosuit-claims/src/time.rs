//! Seconds-since-epoch helpers; JWT times are whole seconds.

use std::fmt::Write as _;
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
///
/// Token times are any `u64` the signer chose: a time past what
/// `SystemTime` can hold or RFC 3339 can write (after 9999-12-31) is shown
/// as its number instead of panicking.
pub fn human_date(secs: u64) -> String {
    let Some(time) = UNIX_EPOCH.checked_add(Duration::from_secs(secs)) else {
        return format!("unix time {secs} (beyond any calendar date)");
    };
    let mut out = String::new();
    // humantime reports dates after year 9999 as a formatting error, which
    // `to_string` would turn into a panic.
    match write!(out, "{}", humantime::format_rfc3339_seconds(time)) {
        Ok(()) => out,
        Err(_) => format!("unix time {secs} (after the year 9999)"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_never_panic_whatever_the_token_says() {
        assert_eq!(human_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(human_date(253_402_300_799), "9999-12-31T23:59:59Z");
        assert!(human_date(253_402_300_800).contains("after the year 9999"));
        assert!(human_date(u64::MAX).contains(&u64::MAX.to_string()));
        for t in [0, 1, u64::MAX / 2, u64::MAX] {
            let _ = human_relative(t, 1_700_000_000);
            let _ = human_relative(1_700_000_000, t);
        }
    }
}
