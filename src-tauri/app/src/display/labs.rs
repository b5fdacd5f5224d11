//! The lab results table and the vitals charts.

use std::collections::HashMap;

use carekey_vault::Record;
use serde::Serialize;
use serde_json::Value;

use super::chart::{
    DIASTOLIC, LOINC, SYSTOLIC, VitalKind, component_name, entered_in_error, is_vital_category,
    vital_kind,
};
use super::date::date_sort_key;
use super::json::{
    self, arr, code_in, concept_text, first, fmt_num, has_code, number, quantity, resource_date,
    status_code, str_at, with_unit,
};
use super::timeline::newest_first;

/// How a result compares with its reference range. Serialized as the HL7 flag letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Interpretation {
    /// Above the range (HL7 `H`, `HH`, `HU`, `>`).
    #[serde(rename = "H")]
    High,
    /// Below the range (`L`, `LL`, `LU`, `<`).
    #[serde(rename = "L")]
    Low,
    /// Within the range (`N`).
    #[serde(rename = "N")]
    Normal,
    /// Abnormal without a direction (`A`, `AA`, `POS`, `DET`, `R`…).
    #[serde(rename = "A")]
    Abnormal,
}

impl Interpretation {
    /// The HL7 v3 ObservationInterpretation flag: `H`, `L`, `N` or `A`.
    pub fn flag(self) -> &'static str {
        match self {
            Interpretation::High => "H",
            Interpretation::Low => "L",
            Interpretation::Normal => "N",
            Interpretation::Abnormal => "A",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        Some(match code.to_ascii_uppercase().as_str() {
            "H" | "HH" | "HU" | ">" => Interpretation::High,
            "L" | "LL" | "LU" | "<" => Interpretation::Low,
            "N" | "NEG" | "ND" | "S" => Interpretation::Normal,
            "A" | "AA" | "POS" | "DET" | "R" | "I" | "W" | "U" | "D" | "B" => {
                Interpretation::Abnormal
            }
            _ => return None,
        })
    }
}

/// A result's reference range (`Observation.referenceRange[0]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceRange {
    /// Lower bound.
    pub low: Option<f64>,
    /// Upper bound.
    pub high: Option<f64>,
    /// Unit of the bounds.
    pub unit: Option<String>,
    /// The range's text, or one built from the bounds ("3.5–5.1 mmol/L", "≥ 60", "≤ 5.7 %").
    pub text: Option<String>,
}

/// One component of a result (a panel's part; systolic / diastolic pressure).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabComponent {
    /// Its name (`code` text).
    pub name: String,
    /// Its LOINC (or first) code.
    pub code: Option<String>,
    /// Numeric value.
    pub value: Option<f64>,
    /// Unit.
    pub unit: Option<String>,
    /// The value as text (always set when there is a value of any type).
    pub value_text: Option<String>,
    /// Reference range.
    pub reference_range: Option<ReferenceRange>,
    /// Interpretation (reported, or computed from the range).
    pub interpretation: Option<Interpretation>,
}

/// One row of the lab table: an Observation that is not a vital sign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabRow {
    /// Record id (hex).
    pub id: String,
    /// The test (`code` text).
    pub title: String,
    /// Its LOINC (or first) code.
    pub code: Option<String>,
    /// Observation category code (`laboratory`, `social-history`…).
    pub category: Option<String>,
    /// Status code (`final`, `preliminary`…).
    pub status: Option<String>,
    /// Numeric value (`valueQuantity.value`, `valueInteger`).
    pub value: Option<f64>,
    /// Unit (`valueQuantity.unit`, else its `code`).
    pub unit: Option<String>,
    /// The value as text, for every value type: "7.5 %", "< 5 mg/L", "Positive" (a coded
    /// value), a string value, "not available: …" (`dataAbsentReason`); `None` only when the
    /// resource carries no value at all (a panel: see `components` and `members`).
    pub value_text: Option<String>,
    /// Reference range.
    pub reference_range: Option<ReferenceRange>,
    /// Interpretation: the reported one, else computed from `value` and the range.
    pub interpretation: Option<Interpretation>,
    /// Whether `interpretation` was computed here rather than reported by the lab.
    pub interpretation_computed: bool,
    /// The reported interpretation's text.
    pub interpretation_text: Option<String>,
    /// Components.
    pub components: Vec<LabComponent>,
    /// Number of `hasMember` results (a panel).
    pub members: usize,
    /// First note's text.
    pub note: Option<String>,
    /// Date text.
    pub date: Option<String>,
    /// Unix seconds of `date`.
    pub sort_key: Option<i64>,
}

struct Measured {
    value: Option<f64>,
    unit: Option<String>,
    value_text: Option<String>,
    range: Option<ReferenceRange>,
    interpretation: Option<Interpretation>,
    computed: bool,
    interpretation_text: Option<String>,
}

fn range_of(v: &Value) -> Option<ReferenceRange> {
    let rr = first(v, "referenceRange")?;
    let low = rr.get("low").and_then(quantity);
    let high = rr.get("high").and_then(quantity);
    let unit = low
        .as_ref()
        .and_then(|q| q.1.clone())
        .or_else(|| high.as_ref().and_then(|q| q.1.clone()));
    let (low, high) = (low.map(|q| q.0), high.map(|q| q.0));
    let built = match (low, high) {
        (Some(l), Some(h)) => Some(format!("{}–{}", fmt_num(l), fmt_num(h))),
        (Some(l), None) => Some(format!("≥ {}", fmt_num(l))),
        (None, Some(h)) => Some(format!("≤ {}", fmt_num(h))),
        (None, None) => None,
    }
    .map(|t| match &unit {
        Some(u) => format!("{t} {u}"),
        None => t,
    });
    let text = str_at(rr, "text").and_then(json::text).or(built);
    if low.is_none() && high.is_none() && text.is_none() {
        return None;
    }
    Some(ReferenceRange {
        low,
        high,
        unit,
        text,
    })
}

fn value_text_of(v: &Value) -> (Option<f64>, Option<String>, Option<String>) {
    if let Some(q) = v.get("valueQuantity") {
        let unit = str_at(q, "unit")
            .or_else(|| str_at(q, "code"))
            .and_then(json::text);
        let cmp = str_at(q, "comparator").filter(|c| ["<", "<=", ">=", ">"].contains(c));
        match q.get("value").and_then(number) {
            Some(n) => {
                let t = with_unit(n, unit.as_deref());
                let t = match cmp {
                    Some(c) => format!("{c} {t}"),
                    None => t,
                };
                return (Some(n), unit, json::text(&t));
            }
            None => {
                if let Some(s) = str_at(q, "value").and_then(json::text) {
                    return (None, unit, Some(s));
                }
            }
        }
    }
    if let Some(n) = v.get("valueInteger").and_then(number) {
        return (Some(n), None, Some(fmt_num(n)));
    }
    if let Some(s) = str_at(v, "valueString").and_then(json::text) {
        return (None, None, Some(s));
    }
    if let Some(t) = v.get("valueCodeableConcept").and_then(concept_text) {
        return (None, None, Some(t));
    }
    if let Some(b) = v.get("valueBoolean").and_then(Value::as_bool) {
        return (None, None, Some(if b { "yes" } else { "no" }.to_owned()));
    }
    for k in ["valueDateTime", "valueTime"] {
        if let Some(s) = str_at(v, k).and_then(json::text) {
            return (None, None, Some(s));
        }
    }
    if let Some(r) = v.get("valueRange") {
        let lo = r.get("low").and_then(quantity);
        let hi = r.get("high").and_then(quantity);
        let unit = lo
            .as_ref()
            .and_then(|q| q.1.clone())
            .or_else(|| hi.as_ref().and_then(|q| q.1.clone()));
        let t = match (lo, hi) {
            (Some(l), Some(h)) => Some(format!("{}–{}", fmt_num(l.0), fmt_num(h.0))),
            (Some(l), None) => Some(format!("≥ {}", fmt_num(l.0))),
            (None, Some(h)) => Some(format!("≤ {}", fmt_num(h.0))),
            (None, None) => None,
        };
        if let Some(t) = t {
            let t = match &unit {
                Some(u) => format!("{t} {u}"),
                None => t,
            };
            return (None, unit, json::text(&t));
        }
    }
    if let Some(r) = v.get("valueRatio") {
        let n = r.get("numerator").and_then(quantity);
        let d = r.get("denominator").and_then(quantity);
        if let (Some(n), Some(d)) = (n, d) {
            let t = format!(
                "{}/{}",
                with_unit(n.0, n.1.as_deref()),
                with_unit(d.0, d.1.as_deref())
            );
            return (None, None, json::text(&t));
        }
    }
    if v.get("valueSampledData").is_some() {
        return (None, None, Some("sampled data".to_owned()));
    }
    if let Some(p) = v.get("valuePeriod") {
        let s = str_at(p, "start").unwrap_or("…");
        let e = str_at(p, "end").unwrap_or("…");
        return (None, None, json::text(&format!("{s} – {e}")));
    }
    if let Some(reason) = v.get("dataAbsentReason").and_then(concept_text) {
        return (None, None, json::text(&format!("not available: {reason}")));
    }
    (None, None, None)
}

fn measured(v: &Value) -> Measured {
    let (value, unit, value_text) = value_text_of(v);
    let range = range_of(v);
    let reported = first(v, "interpretation");
    let interpretation_text = reported.and_then(concept_text);
    let mut interpretation = reported.and_then(|c| {
        json::codings(c)
            .iter()
            .find_map(|x| str_at(x, "code").and_then(Interpretation::from_code))
    });
    let mut computed = false;
    if interpretation.is_none()
        && let (Some(x), Some(r)) = (value, &range)
        && (r.low.is_some() || r.high.is_some())
    {
        interpretation = Some(if r.low.is_some_and(|l| x < l) {
            Interpretation::Low
        } else if r.high.is_some_and(|h| x > h) {
            Interpretation::High
        } else {
            Interpretation::Normal
        });
        computed = true;
    }
    Measured {
        value,
        unit,
        value_text,
        range,
        interpretation,
        computed,
        interpretation_text,
    }
}

fn main_code(v: &Value) -> Option<String> {
    v.get("code")
        .and_then(|k| code_in(k, Some(LOINC)).or_else(|| code_in(k, None)))
        .and_then(json::text)
}

/// Whether an Observation belongs on the vitals charts rather than the lab table.
fn is_vital(obs: &Value) -> bool {
    is_vital_category(obs) || vital_kind(obs).is_some()
}

fn is_observation(r: &Record) -> bool {
    str_at(&r.resource, "resourceType").unwrap_or(&r.summary.fhir_type) == "Observation"
}

fn lab_row(rec: &Record) -> LabRow {
    let r = &rec.resource;
    let m = measured(r);
    let components = arr(r, "component")
        .iter()
        .take(100)
        .map(|c| {
            let cm = measured(c);
            LabComponent {
                name: json::title(&component_name(c), "component"),
                code: main_code(c),
                value: cm.value,
                unit: cm.unit,
                value_text: cm.value_text,
                reference_range: cm.range,
                interpretation: cm.interpretation,
            }
        })
        .collect();
    let date = resource_date(r).and_then(json::text);
    LabRow {
        id: rec.summary.id.to_string(),
        title: json::title(
            &r.get("code")
                .and_then(concept_text)
                .unwrap_or_else(|| rec.summary.title.clone()),
            "Result",
        ),
        code: main_code(r),
        category: arr(r, "category").iter().find_map(|c| {
            json::codings(c)
                .iter()
                .find_map(|x| str_at(x, "code"))
                .and_then(json::text)
        }),
        status: status_code(r.get("status")),
        value: m.value,
        unit: m.unit,
        value_text: m.value_text,
        reference_range: m.range,
        interpretation: m.interpretation,
        interpretation_computed: m.computed,
        interpretation_text: m.interpretation_text,
        components,
        members: arr(r, "hasMember").len(),
        note: first(r, "note")
            .and_then(|n| str_at(n, "text"))
            .and_then(json::text),
        sort_key: date.as_deref().and_then(date_sort_key),
        date,
    }
}

/// The lab table: one row per Observation that is not a vital sign (vital-signs category or a
/// vital-sign code) and not entered in error, whatever its value type (a result without a
/// numeric value keeps its text); newest first, undated last.
pub fn lab_table(records: &[Record]) -> Vec<LabRow> {
    let mut rows: Vec<LabRow> = records
        .iter()
        .filter(|r| is_observation(r) && !is_vital(&r.resource) && !entered_in_error(&r.resource))
        .map(lab_row)
        .collect();
    rows.sort_by(|a, b| newest_first(a.sort_key, b.sort_key));
    rows
}

/// One measurement on a chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Unix seconds (UTC).
    pub t: i64,
    /// The FHIR date text.
    pub date: String,
    /// The value.
    pub value: f64,
    /// The Observation's record id (hex).
    pub id: String,
}

/// One line of a chart (blood pressure has two: systolic and diastolic).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesLine {
    /// Its name ("systolic", "diastolic", or the chart's title).
    pub name: String,
    /// Its LOINC (or first) code.
    pub code: Option<String>,
    /// Unit of its points (the first point's).
    pub unit: Option<String>,
    /// Points, oldest first.
    pub points: Vec<Point>,
    /// The reference range the chart shades: the newest result's that states one (labs);
    /// `None` for vitals, whose records rarely carry one.
    pub range: Option<ReferenceRange>,
}

/// One chart: the measurements of one vital sign over time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Grouping key: the [`VitalKind`] name for known vitals (so both SpO2 codes share one
    /// chart), else the code, else the lower-cased title.
    pub key: String,
    /// The vital, when it is one of the known kinds.
    pub kind: Option<VitalKind>,
    /// Chart title.
    pub title: String,
    /// Unit (the first line's).
    pub unit: Option<String>,
    /// Lines.
    pub lines: Vec<SeriesLine>,
}

/// One value of an Observation headed for a line.
struct LineValue {
    key: String,
    name: String,
    code: Option<String>,
    value: f64,
    unit: Option<String>,
}

struct Builder {
    series: Series,
    line_index: HashMap<String, usize>,
}

impl Builder {
    fn push(&mut self, lv: LineValue, p: Point) {
        let i = match self.line_index.get(&lv.key) {
            Some(i) => *i,
            None => {
                self.series.lines.push(SeriesLine {
                    name: lv.name,
                    code: lv.code,
                    unit: lv.unit,
                    points: Vec::new(),
                    range: None,
                });
                let i = self.series.lines.len() - 1;
                self.line_index.insert(lv.key, i);
                i
            }
        };
        if let Some(line) = self.series.lines.get_mut(i) {
            line.points.push(p);
        }
    }
}

/// The vitals charts: every vital-sign Observation with a date and a numeric value, grouped
/// into one [`Series`] per vital (by code), components (systolic / diastolic) as separate
/// lines of the same chart, points oldest first. Known vitals come first in
/// [`VitalKind::ALL`] order, then the others by title.
pub fn vitals_series(records: &[Record]) -> Vec<Series> {
    let mut builders: Vec<Builder> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for rec in records {
        let r = &rec.resource;
        if !is_observation(rec) || !is_vital(r) || entered_in_error(r) {
            continue;
        }
        let Some(date) = resource_date(r).and_then(json::text) else {
            continue;
        };
        let Some(t) = date_sort_key(&date) else {
            continue;
        };
        let kind = vital_kind(r);
        let title = match kind {
            Some(k) => k.label().to_owned(),
            None => json::title(
                &r.get("code")
                    .and_then(concept_text)
                    .unwrap_or_else(|| rec.summary.title.clone()),
                "Vital sign",
            ),
        };
        let code = main_code(r);
        let key = match (kind, &code) {
            (Some(k), _) => k.as_str().to_owned(),
            (None, Some(c)) => c.clone(),
            (None, None) => title.to_lowercase(),
        };
        let mut values: Vec<LineValue> = Vec::new();
        for c in arr(r, "component") {
            if let Some((v, u)) = c.get("valueQuantity").and_then(quantity) {
                let name = component_name(c);
                let ccode = main_code(c);
                let lkey = ccode.clone().unwrap_or_else(|| name.to_lowercase());
                values.push(LineValue {
                    key: lkey,
                    name: json::title(&name, "component"),
                    code: ccode,
                    value: v,
                    unit: u,
                });
            }
        }
        if values.is_empty()
            && let Some((v, u)) = r.get("valueQuantity").and_then(quantity)
        {
            let code_v = r.get("code");
            let name = if kind == Some(VitalKind::BloodPressure)
                && code_v.is_some_and(|k| has_code(k, Some(LOINC), &[SYSTOLIC]))
            {
                "systolic".to_owned()
            } else if kind == Some(VitalKind::BloodPressure)
                && code_v.is_some_and(|k| has_code(k, Some(LOINC), &[DIASTOLIC]))
            {
                "diastolic".to_owned()
            } else {
                title.clone()
            };
            // Lone systolic / diastolic values join the lines of the panel's components.
            let lkey = match name.as_str() {
                "systolic" => SYSTOLIC.to_owned(),
                "diastolic" => DIASTOLIC.to_owned(),
                _ => "value".to_owned(),
            };
            values.push(LineValue {
                key: lkey,
                name,
                code: code.clone(),
                value: v,
                unit: u,
            });
        }
        if values.is_empty() {
            continue;
        }
        let bi = match index.get(&key) {
            Some(i) => *i,
            None => {
                builders.push(Builder {
                    series: Series {
                        key: key.clone(),
                        kind,
                        title: title.clone(),
                        unit: None,
                        lines: Vec::new(),
                    },
                    line_index: HashMap::new(),
                });
                index.insert(key, builders.len() - 1);
                builders.len() - 1
            }
        };
        let Some(b) = builders.get_mut(bi) else {
            continue;
        };
        for lv in values {
            let p = Point {
                t,
                date: date.clone(),
                value: lv.value,
                id: rec.summary.id.to_string(),
            };
            b.push(lv, p);
        }
    }
    let mut out: Vec<Series> = builders
        .into_iter()
        .map(|mut b| {
            for l in &mut b.series.lines {
                l.points.sort_by_key(|p| p.t);
            }
            if b.series.kind == Some(VitalKind::BloodPressure) {
                b.series.lines.sort_by_key(|l| match l.name.as_str() {
                    "systolic" => 0,
                    "diastolic" => 1,
                    _ => 2,
                });
            }
            b.series.unit = b.series.lines.first().and_then(|l| l.unit.clone());
            b.series
        })
        .collect();
    out.sort_by(|a, b| {
        let rank = |s: &Series| {
            s.kind
                .and_then(|k| VitalKind::ALL.iter().position(|x| *x == k))
                .unwrap_or(VitalKind::ALL.len())
        };
        rank(a).cmp(&rank(b)).then_with(|| {
            if a.kind.is_none() && b.kind.is_none() {
                a.title.cmp(&b.title)
            } else {
                std::cmp::Ordering::Equal
            }
        })
    });
    out
}

/// The lab trend charts: the numeric results of [`lab_table`] grouped by test (code, else
/// title), one line each, points oldest first, shaded with the newest stated reference range;
/// only tests measured at least twice (one value is not a trend), each in one unit (a test
/// reported in two units is charted in the newest one's, the others are left to the table).
/// Ordered by the newest result first. `rows` is [`lab_table`]'s answer (newest first).
pub fn lab_series(rows: &[LabRow]) -> Vec<Series> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<&LabRow>> = HashMap::new();
    for row in rows {
        if row.value.is_none() || row.sort_key.is_none() || row.date.is_none() {
            continue;
        }
        let key = row.code.clone().unwrap_or_else(|| row.title.to_lowercase());
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(row);
    }
    order
        .into_iter()
        .filter_map(|key| {
            let group = groups.remove(&key)?;
            let newest = *group.first()?;
            let unit = newest.unit.clone();
            let mut points: Vec<Point> = group
                .iter()
                .filter(|r| r.unit == unit)
                .filter_map(|r| {
                    Some(Point {
                        t: r.sort_key?,
                        date: r.date.clone()?,
                        value: r.value?,
                        id: r.id.clone(),
                    })
                })
                .collect();
            if points.len() < 2 {
                return None;
            }
            points.sort_by_key(|p| p.t);
            let range = group
                .iter()
                .filter(|r| r.unit == unit)
                .find_map(|r| r.reference_range.clone())
                .filter(|rr| rr.low.is_some() || rr.high.is_some())
                // Bounds in another unit than the points would shade the wrong band.
                .filter(|rr| rr.unit.is_none() || rr.unit == unit);
            Some(Series {
                key,
                kind: None,
                title: newest.title.clone(),
                unit: unit.clone(),
                lines: vec![SeriesLine {
                    name: newest.title.clone(),
                    code: newest.code.clone(),
                    unit,
                    points,
                    range,
                }],
            })
        })
        .collect()
}
