//! Durations as `hoist.toml` writes them (`"250ms"`, `"30s"`, `"5m"`, `"1h"`).

use super::*;

/// A duration written as `"250ms"`, `"30s"`, `"5m"`, `"1h"` (or a bare number of seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "DurRepr", into = "String")]
pub struct Dur(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum DurRepr {
    Secs(u64),
    Text(String),
}

impl TryFrom<DurRepr> for Dur {
    type Error = String;
    fn try_from(r: DurRepr) -> Result<Self, String> {
        match r {
            DurRepr::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            DurRepr::Text(s) => parse_duration(&s).map(Dur),
        }
    }
}

impl From<Dur> for String {
    fn from(d: Dur) -> String {
        format_duration(d.0)
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (write e.g. \"500ms\", \"30s\", \"5m\")"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}` (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=7.0 * 86400.0).contains(&secs) {
        return Err(format!("duration `{s}` is out of range (0 to 7 days)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if !ms.is_multiple_of(60_000) || ms == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m", ms / 60_000)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}
