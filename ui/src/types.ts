// Wire types the shared components display. They mirror the Rust serde output of carekey-app
// (patient-ui/src/ipc.fixture.json, written by the shell's Rust test, keeps them honest).

/** `carekey_app::AppError`: every command error. */
export interface AppError {
  code: string;
  message: string;
}

/**
 * `carekey_app::display::Provenance::kind`: a row says which kind of provenance it has; the
 * sentence to show is the row's `provenance_label`, the names behind it are in the record detail.
 */
export type Provenance = 'signed_valid' | 'imported_unsigned' | 'signature_invalid' | 'shared' | 'unsigned';

/** `carekey_app::display::TimelineRow`. */
export interface TimelineRow {
  id: string;
  fhir_type: string;
  category: string;
  title: string;
  date: string | null;
  status: string | null;
  detail: string | null;
  author: string | null;
  provenance: Provenance;
  provenance_label: string;
  attachments: number;
}

/** One point of a trend chart: unix seconds and a value. */
export interface TrendPoint {
  t: number;
  v: number;
}

/** A share's categories, as `carekey_app::ipc::ShareCategory` serializes them. */
export type ShareCategory =
  | 'allergies'
  | 'conditions'
  | 'medications'
  | 'immunizations'
  | 'procedures'
  | 'observations'
  | 'documents'
  | 'encounters'
  | 'notes'
  | 'demographics'
  | 'other';

/** One clinic key this device trusts (`carekey_app::session::TrustedClinic`). */
export interface TrustedClinic {
  name: string;
  /** 64 hex, for `untrust_clinic`. */
  key: string;
  added_at: number;
}

/** `carekey_app::display::DocKind`: what a viewer may do with a file. */
export type DocKind = 'pdf' | 'image' | 'text' | 'other';

/** `carekey_app::display::DocumentAttachment`: one file of a document. */
export interface DocumentAttachment {
  /** The vault's attachment id, `null` for content kept inside the resource. */
  id: string | null;
  content_type: string | null;
  title: string | null;
  size: number | null;
  kind: DocKind;
  /** Where the file is kept when it is not on this device. */
  url: string | null;
}

/** `carekey_app::display::ReferenceRange`. */
export interface ReferenceRange {
  low: number | null;
  high: number | null;
  unit: string | null;
  text: string | null;
}

/** `carekey_app::display::Point`: one measurement on a chart. */
export interface Point {
  t: number;
  date: string;
  value: number;
  id: string;
}

/** `carekey_app::display::SeriesLine`. */
export interface SeriesLine {
  name: string;
  code: string | null;
  unit: string | null;
  points: Point[];
  /** The range the chart shades (labs); `null` for vitals. */
  range: ReferenceRange | null;
}

/** `carekey_app::display::Series`: one chart. */
export interface Series {
  key: string;
  kind: string | null;
  title: string;
  unit: string | null;
  lines: SeriesLine[];
}
