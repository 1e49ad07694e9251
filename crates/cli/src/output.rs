//! Human output: aligned tables and UTC timestamps, and (`markdown`) a release as a
//! CI job summary. (`--json` output needs none of this: it is the registry and API
//! types, serialized.)

pub(crate) mod markdown;

use std::io::{self, Write};

/// Rows of cells printed in aligned columns, with an optional header.
pub(crate) struct Table {
    /// The column titles (printed first), if any.
    header: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<const N: usize>(header: [&str; N]) -> Table {
        Table {
            header: Some(header.iter().map(|s| s.to_string()).collect()),
            rows: Vec::new(),
        }
    }

    /// A table without a header (key/value listings).
    pub(crate) fn plain() -> Table {
        Table {
            header: None,
            rows: Vec::new(),
        }
    }

    pub(crate) fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.to_vec());
    }

    pub(crate) fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let all: Vec<&Vec<String>> = self.header.iter().chain(self.rows.iter()).collect();
        let cols = all.iter().map(|r| r.len()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                all.iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in all {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[c] - cell.chars().count();
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

/// `2026-11-22 01:12:44Z` for milliseconds since the epoch.
pub(crate) fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = hoist_types::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `HH:MM:SS.mmm` (UTC) of a time in milliseconds since the epoch, for log lines.
pub(crate) fn time_of_day(ms: u64) -> String {
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_utc_dates() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_ms(1_795_309_964_000), "2026-11-22 01:12:44Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29 00:00:00Z");
    }

    #[test]
    fn columns_align() {
        let mut t = Table::new(["A", "B"]);
        t.row(["long".into(), "x".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A     B\nlong  x\n");
    }
}
