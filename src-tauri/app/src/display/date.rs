//! FHIR `date` / `dateTime` / `instant` text to a sortable key.

/// Unix seconds (UTC) of a FHIR date, dateTime or instant, for sorting rows.
///
/// Accepts `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, and `YYYY-MM-DDThh:mm[:ss[.fraction]]` with an
/// optional `Z` or `±hh:mm` offset (no offset reads as UTC). A partial date sorts at its
/// first instant (`2015-03` as 2015-03-01T00:00:00Z). Anything else (including out-of-range
/// months, days or hours) gives `None`, and such rows sort with the undated ones.
///
/// ```
/// use carekey_app::display::date_sort_key;
/// assert_eq!(date_sort_key("1970-01-02"), Some(86_400));
/// assert_eq!(date_sort_key("1970-01-01T01:00:00+01:00"), Some(0));
/// assert_eq!(date_sort_key("yesterday"), None);
/// ```
pub fn date_sort_key(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let mut p = Cursor { b, i: 0 };
    let year = p.digits(4)?;
    let (mut month, mut day) = (1, 1);
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    let mut offset = 0i64;
    if p.eat(b'-') {
        month = p.digits(2)?;
        if p.eat(b'-') {
            day = p.digits(2)?;
            if p.eat(b'T') || p.eat(b' ') {
                hour = p.digits(2)?;
                if !p.eat(b':') {
                    return None;
                }
                minute = p.digits(2)?;
                if p.eat(b':') {
                    second = p.digits(2)?;
                    if p.eat(b'.') {
                        let start = p.i;
                        while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                            p.i += 1;
                        }
                        if p.i == start {
                            return None;
                        }
                    }
                }
                if p.eat(b'Z') || p.eat(b'z') {
                } else if let Some(sign) = p.peek().filter(|c| *c == b'+' || *c == b'-') {
                    p.i += 1;
                    let oh = p.digits(2)?;
                    if !p.eat(b':') {
                        return None;
                    }
                    let om = p.digits(2)?;
                    if oh > 14 || om > 59 {
                        return None;
                    }
                    let o = oh * 3600 + om * 60;
                    offset = if sign == b'+' { o } else { -o };
                }
            }
        }
    }
    if p.i != b.len() {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 24
        || minute > 59
        || second > 60
        || (hour == 24 && (minute, second) != (0, 0))
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut v = 0i64;
        for _ in 0..n {
            let c = self.peek().filter(u8::is_ascii_digit)?;
            v = v * 10 + i64::from(c - b'0');
            self.i += 1;
        }
        Some(v)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(date_sort_key("1970"), Some(0));
        assert_eq!(date_sort_key("1970-02"), Some(31 * 86_400));
        assert_eq!(date_sort_key("2000-03-01"), Some(951_868_800));
        assert_eq!(date_sort_key("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            date_sort_key("1987-11-19T00:22:16.824-05:00"),
            Some(564_297_736)
        );
        assert_eq!(date_sort_key("2015-10-10T09:15"), Some(1_444_468_500));
        for bad in [
            "",
            "19",
            "2015-13",
            "2015-02-30",
            "2015-10-10T",
            "2015-10-10T25:00",
            "2015-1-1",
            "abcd",
            "2015-10-10T09:15:00+1",
            "２０１５",
            "2015-10-10T09:15:00.Z",
        ] {
            assert_eq!(date_sort_key(bad), None, "{bad}");
        }
        assert_eq!(date_sort_key("2016-02-29"), Some(1_456_704_000));
        assert_eq!(date_sort_key("1900-02-29"), None);
        assert!(date_sort_key("0001-01-01").is_some_and(|k| k < 0));
    }
}
