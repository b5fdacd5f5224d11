// Wire types the shared components display. They mirror the Rust serde output of carekey-app
// (patient-ui/src/ipc.fixture.json, written by the shell's Rust test, keeps them honest).

/** `carekey_app::AppError`: every command error. */
export interface AppError {
  code: string;
  message: string;
}

/** `carekey_app::display::Provenance` (tagged by `kind`). */
export type Provenance =
  | { kind: 'signed_valid'; signer: string }
  | { kind: 'imported_unsigned'; source: string }
  | { kind: 'signature_invalid' }
  | { kind: 'shared'; share: string; expires_at: number; signer: string | null }
  | { kind: 'unsigned' };

/** `carekey_app::display::TimelineRow`. */
export interface TimelineRow {
  id: string;
  fhir_type: string;
  category: string;
  title: string;
  date: string | null;
  sort_key: number | null;
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
