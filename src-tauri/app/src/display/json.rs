//! Defensive readers over `serde_json::Value`: every accessor returns `None` (or an empty
//! slice) when a field is missing or of the wrong JSON type.

use serde_json::Value;

/// Longest title in a row, in characters (longer ones are cut and end in `…`).
pub const MAX_TITLE_CHARS: usize = 300;

/// Longest other text in a row (status, value, dosage, author, label…), in characters.
pub const MAX_TEXT_CHARS: usize = 500;

/// `s` cut to at most `max` characters (at a character boundary); a cut text ends in `…`
/// (which counts towards `max`). Surrounding whitespace is trimmed.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some(_) if max == 0 => String::new(),
        Some(_) => {
            // Keep max - 1 characters and the ellipsis.
            let end = s
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(s.len(), |(i, _)| i);
            let mut out = s.get(..end).unwrap_or_default().trim_end().to_owned();
            out.push('…');
            out
        }
    }
}

/// A title: clipped to [`MAX_TITLE_CHARS`]; empty titles become `fallback`.
pub(crate) fn title(s: &str, fallback: &str) -> String {
    let t = clip(s, MAX_TITLE_CHARS);
    if t.is_empty() {
        clip(fallback, MAX_TITLE_CHARS)
    } else {
        t
    }
}

/// A non-title text clipped to [`MAX_TEXT_CHARS`]; `None` when empty.
pub(crate) fn text(s: &str) -> Option<String> {
    let t = clip(s, MAX_TEXT_CHARS);
    (!t.is_empty()).then_some(t)
}

/// `v[k]` as a string.
pub(crate) fn str_at<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k)?.as_str()
}

/// `v[k]` as an array (empty when missing or not an array).
pub(crate) fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    match v.get(k) {
        Some(Value::Array(a)) => a,
        _ => &[],
    }
}

/// `v[k]` when it is an object, or the first element when it is an array of them (FHIR
/// elements of cardinality 0..* are often written as a single object by hand-made data).
pub(crate) fn first<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    match v.get(k)? {
        Value::Array(a) => a.first(),
        other => Some(other),
    }
}

/// A number, or a string holding one; only finite values.
pub(crate) fn number(v: &Value) -> Option<f64> {
    let f = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

/// A number as people write it: `120`, `7.5`, `0.001`.
pub(crate) fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        // Exact: the value is integral and well inside i64.
        (f as i64).to_string()
    } else {
        format!("{f}")
    }
}

/// The codings of a CodeableConcept (empty when missing or malformed).
pub(crate) fn codings(concept: &Value) -> &[Value] {
    arr(concept, "coding")
}

/// Text of a CodeableConcept: its `text`, else a coding's `display`, else the first code.
/// A bare string (a common hand-written mistake) is taken as the text.
pub(crate) fn concept_text(v: &Value) -> Option<String> {
    if let Value::String(s) = v {
        return text(s);
    }
    if let Some(t) = str_at(v, "text").and_then(text) {
        return Some(t);
    }
    let cs = codings(v);
    cs.iter()
        .find_map(|c| str_at(c, "display").and_then(text))
        .or_else(|| cs.iter().find_map(|c| str_at(c, "code").and_then(text)))
}

/// Whether a CodeableConcept carries one of `codes` (in any system when `system` is `None`,
/// else in that system or in a coding without a system).
pub(crate) fn has_code(concept: &Value, system: Option<&str>, codes: &[&str]) -> bool {
    codings(concept).iter().any(|c| {
        let sys_ok = match (system, str_at(c, "system")) {
            (None, _) | (Some(_), None) => true,
            (Some(want), Some(got)) => want == got,
        };
        sys_ok && str_at(c, "code").is_some_and(|code| codes.contains(&code))
    })
}

/// First code of a CodeableConcept in `system` (or any system when `None`).
pub(crate) fn code_in<'a>(concept: &'a Value, system: Option<&str>) -> Option<&'a str> {
    codings(concept).iter().find_map(|c| {
        let ok = system.is_none_or(|want| str_at(c, "system") == Some(want));
        if ok { str_at(c, "code") } else { None }
    })
}

/// A status as a lower-case code: a `code` string, a CodeableConcept's first code (or its
/// text), or `None`.
pub(crate) fn status_code(v: Option<&Value>) -> Option<String> {
    let v = v?;
    let raw = match v {
        Value::String(s) => Some(s.as_str()),
        Value::Object(_) => codings(v)
            .iter()
            .find_map(|c| str_at(c, "code"))
            .or_else(|| str_at(v, "text")),
        _ => None,
    }?;
    text(&raw.to_ascii_lowercase())
}

/// Display of a Reference (`display`, else the `reference` text).
pub(crate) fn reference_display(v: &Value) -> Option<String> {
    if let Value::String(s) = v {
        return text(s);
    }
    str_at(v, "display").and_then(text)
}

/// A Quantity's value and unit (`unit`, else `code`).
pub(crate) fn quantity(v: &Value) -> Option<(f64, Option<String>)> {
    let value = number(v.get("value")?)?;
    let unit = str_at(v, "unit")
        .or_else(|| str_at(v, "code"))
        .and_then(text);
    Some((value, unit))
}

/// `value` with its unit: `7.5 %`, `120 mmHg`, `3`.
pub(crate) fn with_unit(value: f64, unit: Option<&str>) -> String {
    match unit {
        Some(u) if !u.is_empty() => format!("{} {u}", fmt_num(value)),
        _ => fmt_num(value),
    }
}

/// The clinically relevant date of a resource, as its FHIR text (first present field).
pub(crate) fn resource_date(r: &Value) -> Option<&str> {
    const DATE_FIELDS: &[&str] = &[
        "effectiveDateTime",
        "effectiveInstant",
        "onsetDateTime",
        "performedDateTime",
        "occurrenceDateTime",
        "authoredOn",
        "recordedDate",
        "issued",
        "date",
        "dateAsserted",
        "created",
    ];
    const PERIOD_FIELDS: &[&str] = &[
        "effectivePeriod",
        "performedPeriod",
        "period",
        "onsetPeriod",
    ];
    DATE_FIELDS.iter().find_map(|k| str_at(r, k)).or_else(|| {
        PERIOD_FIELDS
            .iter()
            .find_map(|k| r.get(*k).and_then(|p| str_at(p, "start")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_at_char_boundary() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
        let s = "é".repeat(10);
        let c = clip(&s, 4);
        assert_eq!(c.chars().count(), 4);
        assert!(c.ends_with('…'));
        assert_eq!(clip("abc", 0), "");
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(120.0), "120");
        assert_eq!(fmt_num(7.5), "7.5");
        assert_eq!(number(&Value::String(" 3.2 ".into())), Some(3.2));
        assert_eq!(number(&Value::Bool(true)), None);
    }
}
