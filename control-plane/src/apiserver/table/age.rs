//! Durations as kubectl prints them (`duration.HumanDuration`): `5s`,
//! `3m2s`, `15m`, `2h5m`, `10h`, `2d5h`, `30d`, `2y45d`.

use jiff::Timestamp;

/// Kubernetes' `HumanDuration` for a duration in whole seconds.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `translateTimestampSince`: the age of an RFC 3339 timestamp, or `<unknown>`.
pub fn since(ts: Option<&str>, now: Timestamp) -> String {
    match ts.and_then(|s| s.parse::<Timestamp>().ok()) {
        None => "<unknown>".to_string(),
        Some(t) => human_duration(now.as_second() - t.as_second()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kubernetes_human_duration() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (2 * 3600 + 5 * 60 + 3 * 3600, "5h5m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (2 * 86400 + 5 * 3600, "2d5h"),
            (8 * 86400, "8d"),
            (400 * 86400, "400d"),
            (730 * 86400, "2y"),
            (775 * 86400, "2y45d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn since_parses_timestamps() {
        let now: Timestamp = "2024-01-01T00:10:00Z".parse().expect("ts");
        assert_eq!(since(Some("2024-01-01T00:00:00Z"), now), "10m");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some("garbage"), now), "<unknown>");
    }
}
