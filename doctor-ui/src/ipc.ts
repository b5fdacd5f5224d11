// The one module that talks to the Rust shell. Types mirror the Rust serde output of the
// doctor shell and carekey-app (ipc.fixture.json, written by `cargo test -p carekey-doctor`,
// is checked against them in tests/ipc.test.ts). No business logic here: each function is one
// command; FHIR for write-backs is built in Rust.
import { invoke } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';
import {
  asAppError,
  type AppError,
  type DocKind,
  type DocumentAttachment,
  type Point,
  type ReferenceRange,
  type Series,
  type SeriesLine,
  type ShareCategory,
  type TimelineRow,
  type TrustedClinic,
} from '@carekey/ui';

export type {
  AppError,
  DocKind,
  DocumentAttachment,
  Point,
  ReferenceRange,
  Series,
  SeriesLine,
  ShareCategory,
  TimelineRow,
  TrustedClinic,
};
export { asAppError };

export interface AppStatus {
  vault_exists: boolean;
  unlocked: boolean;
  default_relay_url: string;
}
export interface Created {
  words: string;
}
export interface ProfileView {
  name: string;
  role: string;
  licence: string | null;
  fingerprint: string;
  appears_as: string;
  /** This device's card as text, for a clinic's tool to attest. */
  card_text: string;
  relay_url: string;
  /** Base URLs of the closed relays this device holds an enrollment key for (never the keys). */
  enrolled_relays: string[];
}
/** `set_enrollment_key`: the operator's key of a closed relay; `key: null` removes it. */
export interface SetEnrollmentKey {
  relay_url: string;
  key: string | null;
}
export interface ScanView {
  scan: string;
  check_code: string;
}
/** What `open_smart_link` gave: the new Patients entry of a SMART Health Link or Card, and
 * the files it held that were not imported (with why). */
export interface SmartOpenView {
  patient: PatientLinkView;
  skipped: string[];
}
/** `open_smart_link`'s argument: the link or card text (empty: the code just scanned) and,
 * for a passcode-protected link, the passcode. */
/** `forward`'s argument. */
export interface Forward {
  patient: string;
  invite: string;
  reason: string;
  categories: ShareCategory[];
}
export interface OpenSmartLink {
  text: string;
  passcode: string | null;
}
export interface PatientLinkView {
  id: string;
  name: string;
  trust: string;
  share: string;
  expires_at: number;
  status: 'active' | 'expired' | 'ended' | string;
  records: number;
  fetched_at: number | null;
}
export interface ProblemRow {
  id: string;
  title: string;
  clinical_status: string | null;
  verification_status: string | null;
  severity: string | null;
  onset: string | null;
  sort_key: number | null;
}
export interface MedicationRow {
  id: string;
  fhir_type: string;
  title: string;
  status: string | null;
  dosage: string | null;
  date: string | null;
  sort_key: number | null;
}
export interface AllergyRow {
  id: string;
  title: string;
  criticality: string | null;
  clinical_status: string | null;
  category: string | null;
  allergy_type: string | null;
  reactions: string[];
  onset: string | null;
}
export interface ComponentValue {
  name: string;
  code: string | null;
  value: number;
  unit: string | null;
}
export interface VitalRow {
  kind: string;
  label: string;
  id: string;
  code: string | null;
  value: number | null;
  unit: string | null;
  value_text: string;
  components: ComponentValue[];
  date: string | null;
  sort_key: number | null;
}
export interface ChartSummary {
  problems: ProblemRow[];
  medications: MedicationRow[];
  allergies: AllergyRow[];
  vitals: VitalRow[];
}
export interface LabComponent {
  name: string;
  code: string | null;
  value: number | null;
  unit: string | null;
  value_text: string | null;
  reference_range: ReferenceRange | null;
  interpretation: 'H' | 'L' | 'N' | 'A' | string | null;
}
export interface LabRow {
  id: string;
  title: string;
  code: string | null;
  category: string | null;
  status: string | null;
  value: number | null;
  unit: string | null;
  value_text: string | null;
  reference_range: ReferenceRange | null;
  interpretation: 'H' | 'L' | 'N' | 'A' | string | null;
  interpretation_computed: boolean;
  interpretation_text: string | null;
  components: LabComponent[];
  members: number;
  note: string | null;
  date: string | null;
  sort_key: number | null;
}
export interface DocumentRow {
  id: string;
  fhir_type: string;
  title: string;
  date: string | null;
  sort_key: number | null;
  author: string | null;
  status: string | null;
  kind: DocKind;
  attachments: DocumentAttachment[];
}
export interface ChartView {
  patient: PatientLinkView;
  rows: TimelineRow[];
  summary: ChartSummary;
  labs: LabRow[];
  vitals: Series[];
  /** Lab results measured more than once, each shaded with its reference range. */
  lab_trends: Series[];
  documents: DocumentRow[];
  /** The kinds of records held (what a narrower forward can pick from). */
  categories: ShareCategory[];
}
export interface ChartRecord {
  summary: {
    id: string;
    fhir_type: string;
    fhir_id: string;
    category: string;
    title: string;
    date: string | null;
    key_values: { key: string; value: string }[];
    codes: { system: string; code: string; display: string | null }[];
    author: string | null;
    origin: Record<string, unknown> & { kind?: string };
    signature: { status: string; signer?: string; card_hash?: string };
    attachments: { id: string; content_type: string | null; title: string | null; size: number }[];
  };
  resource: Record<string, unknown>;
}
export type WriteBack =
  | { kind: 'note'; patient: string; text: string }
  | { kind: 'blood_pressure'; patient: string; systolic: number; diastolic: number; date: string }
  | { kind: 'medication'; patient: string; text: string; dosage: string | null };
export interface SentNoteView {
  id: string;
  patient: string;
  patient_name: string;
  resource_type: string;
  title: string;
  sent_at: number;
  delivery: string;
}
export interface InviteView {
  invite: string;
  qr_svg: string;
  text: string;
  code: string;
  expires_at: number;
}
export interface ColleagueView {
  name: string;
  licence: string | null;
  trust: string;
  code: string;
}
export type ForwardOutcome = { status: 'waiting_for_patient' } | { status: 'forwarded' };
export type AppEvent =
  | { event: 'locked' }
  | { event: 'progress'; op: string; stage: string; done: number; total: number }
  | { event: 'inbox_changed'; notes: number; forward_requests: number }
  | { event: 'access_ended'; patient: string; purged: number }
  | { event: 'problem'; code: string; message: string };

async function call<T>(cmd: string, args?: unknown): Promise<T> {
  try {
    return await invoke<T>(cmd, args === undefined ? undefined : { args });
  } catch (e) {
    throw asAppError(e);
  }
}

export const ipc = {
  appStatus: () => call<AppStatus>('app_status'),
  createVault: (a: { passphrase: string; name: string; licence: string | null; relay_url: string }) =>
    call<Created>('create_vault', a),
  unlock: (passphrase: string) => call<null>('unlock', { passphrase }),
  lock: () => call<null>('lock'),
  profile: () => call<ProfileView>('profile'),
  setEnrollmentKey: (relay_url: string, key: string | null) =>
    call<ProfileView>('set_enrollment_key', { relay_url, key } satisfies SetEnrollmentKey),
  scanText: (text: string) => call<ScanView>('scan_text', { text }),
  scanImage: (image_base64: string) => call<ScanView>('scan_image', { image_base64 }),
  scanFrame: (width: number, height: number, luma_base64: string) =>
    call<ScanView>('scan_frame', { width, height, luma_base64 }),
  openSmartLink: (text: string, passcode: string | null = null) =>
    call<SmartOpenView>('open_smart_link', { text, passcode } satisfies OpenSmartLink),
  waitForGrant: (id: string, wait_secs: number) => call<string>('wait_for_grant', { id, wait_secs }),
  refreshPatient: (id: string) => call<PatientLinkView>('refresh_patient', { id }),
  patients: () => call<PatientLinkView[]>('patients'),
  chart: (id: string) => call<ChartView>('chart', { id }),
  chartRecord: (id: string) => call<ChartRecord>('get_chart_record', { id }),
  /** File `index` of a shared record (as its document row lists them), as raw bytes. */
  openAttachment: (record_id: string, index: number) =>
    call<ArrayBuffer>('open_attachment', { record_id, index } satisfies AttachmentRef),
  writeBack: (w: WriteBack) => call<SentNoteView>('write_back', w),
  sentNotes: () => call<SentNoteView[]>('sent_notes'),
  colleagueInvite: (relay_url: string) => call<InviteView>('colleague_invite', { relay_url }),
  waitForIntroduction: (id: string, wait_secs: number) =>
    call<string>('wait_for_introduction', { id, wait_secs }),
  readInvite: (text: string) => call<ColleagueView>('read_invite', { text }),
  /** `categories` empty: everything this doctor holds for the patient. */
  forward: (patient: string, invite: string, reason: string, categories: ShareCategory[]) =>
    call<ForwardOutcome>('forward', { patient, invite, reason, categories } satisfies Forward),
  purgeExpired: () => call<number>('purge_expired'),
  trustedClinics: () => call<TrustedClinic[]>('trusted_clinics'),
  trustClinic: (text: string) => call<TrustedClinic[]>('trust_clinic', { text }),
  untrustClinic: (key: string) => call<TrustedClinic[]>('untrust_clinic', { key } satisfies ClinicRef),
  importAttestation: (text: string) => call<ProfileView>('import_attestation', { text }),
  cancel: (id: string) => call<null>('cancel', { id }),
};

/** `open_attachment`'s argument. */
export interface AttachmentRef {
  record_id: string;
  index: number;
}

/** `untrust_clinic`'s argument. */
export interface ClinicRef {
  key: string;
}

export const EVENT = 'carekey://event';

/** Subscribes to the shell's events. */
export function onEvent(f: (e: AppEvent) => void): Promise<UnlistenFn> {
  return listen<AppEvent>(EVENT, (e) => f(e.payload));
}

/** Whether this is a phone build (the camera scanner plugin exists only there). */
export function isMobile(): boolean {
  return /Android|iPhone|iPad/i.test(globalThis.navigator?.userAgent ?? '');
}

/** The phone camera scanner (tauri-plugin-barcode-scanner, Android/iOS only): the text of one
 * QR code, which goes to `scanText`. */
export async function scanWithCamera(): Promise<string> {
  try {
    const r = await invoke<{ content: string }>('plugin:barcode-scanner|scan', {
      windowed: false,
      formats: ['QR_CODE'],
    });
    return r.content;
  } catch (e) {
    throw asAppError(e);
  }
}

/** A chosen file as standard base64 (for `scanImage`). */
export function fileBase64(file: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onerror = () => reject({ code: 'invalid_input', message: 'that file could not be read' });
    r.onload = () => {
      const url = String(r.result ?? '');
      resolve(url.slice(url.indexOf(',') + 1));
    };
    r.readAsDataURL(file);
  });
}
