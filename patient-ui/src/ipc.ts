// The one module that talks to the Rust shell. Types mirror the Rust serde output of the
// shell and carekey-app (ipc.fixture.json, written by `cargo test -p carekey-patient`, is
// checked against them in tests/ipc.test.ts). No business logic here: each function is one
// command.
import { invoke } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';
import {
  asAppError,
  type AppError,
  type DocumentAttachment,
  type Series,
  type ShareCategory,
  type TimelineRow,
  type TrustedClinic,
} from '@carekey/ui';

export type { AppError, DocumentAttachment, Series, ShareCategory, TimelineRow, TrustedClinic };
export { asAppError };

export type PolicyChoice = 'never' | 'ask' | 'allowed';

/** `trends`: the Records screen's charts. */
export interface TrendsView {
  vitals: Series[];
  /** Lab results measured more than once, each shaded with its reference range. */
  labs: Series[];
}

/** `open_attachment`'s argument. */
export interface AttachmentRef {
  record_id: string;
  index: number;
}

export interface CategoryInfo {
  category: string;
  label: string;
}
export interface AppStatus {
  vault_exists: boolean;
  unlocked: boolean;
  default_relay_url: string;
  categories: CategoryInfo[];
  settings: Settings | null;
}
export interface RelayCheck {
  relay_url: string;
  reachable: boolean;
  message: string;
}
export interface BackupStatus {
  version: number;
  at: number;
}
export interface RestoreVault {
  phrase: string;
  new_passphrase: string;
  name: string;
  relay_url: string;
}
export interface Created {
  words: string;
}
export interface Settings {
  version: number;
  name: string;
  licence: string | null;
  relay_url: string;
  auto_lock_secs: number | null;
  last_backup_at: number | null;
  /** Base URLs of the closed relays this device holds an enrollment key for (never the keys). */
  enrolled_relays: string[];
}
/** `set_enrollment_key`: the operator's key of a closed relay; `key: null` removes it. */
export interface SetEnrollmentKey {
  relay_url: string;
  key: string | null;
}
export interface ImportReport {
  records: number;
  replaced: number;
  attachments: number;
  by_type: Record<string, number>;
}
export interface RecordDetail {
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
export interface ShareStarted {
  share: string;
  pairing: string;
  qr_svg: string;
  qr_text: string;
  qr_expires_at: number;
  expires_at: number;
  records: number;
  attachments: number;
  categories: ShareCategory[];
}
export interface DoctorAtTheDoor {
  pairing: string;
  name: string;
  licence: string | null;
  check_code: string;
  attested: boolean;
  trust: string;
}
/** What one grantee's grant covers: the scope the patient signed into it. */
export type GrantScope =
  | { kind: 'everything' }
  | { kind: 'only'; categories: ShareCategory[]; records: number }
  /** Saved before the phone kept each grant's scope. */
  | { kind: 'not_recorded' };
export interface Grantee {
  relationship: string;
  name: string;
  trust: string;
  status: string;
  expires_at: number;
  scope: GrantScope;
}
export interface ShareView {
  id: string;
  created_at: number;
  expires_at: number;
  policy: PolicyChoice;
  depth: number;
  categories: ShareCategory[];
  records: number;
  attachments: number;
  grantees: Grantee[];
}
export interface ForwardRequestRow {
  id: string;
  from: string;
  colleague: string;
  colleague_trust: string;
  share: string;
  reason: string;
  /** Whole categories the colleague would see. */
  categories: ShareCategory[];
  /** Records picked one by one that the colleague would also see. */
  records: number;
}
/** One colleague a doctor passed a share on to (under the doctor `root`). */
export interface DelegationRow {
  /** Handle for `revokeDelegation`; null for one that can only go with its doctor. */
  id: string | null;
  by: string;
  colleague: string;
  root: string;
  level: number;
  expires_at: number;
  status: 'active' | 'expired' | 'revoked';
}
export interface RevokeDelegation {
  share: string;
  delegation: string;
}
/** A share's verified access log: who fetched how much, and security warnings in words. */
export interface AccessLogView {
  lines: AccessLine[];
  /** "<recipient> downloaded the link at …" (the name is what the viewer typed). */
  downloads: string[];
  alerts: string[];
}
/** `publish_link`'s argument. */
export interface PublishLink {
  share: string;
  passcode: boolean;
  expires_in_secs: number;
  label: string | null;
}
/** A SMART Health Link just published: its QR, the passcode to tell the clinic, the warning. */
export interface PublishedLinkView {
  id: string;
  qr_svg: string;
  shlink: string;
  passcode: string | null;
  expires_at: number;
  files: number;
  /** Attachments (PDFs, images) written into their records. */
  attachments: number;
  /** Attachments left out for the link's size caps; `left_out_note` says why. */
  left_out: number;
  left_out_note: string | null;
  warning: string;
}
export interface LinkRow {
  id: string;
  label: string | null;
  expires_at: number;
  status: 'active' | 'expired';
  files: number;
}
export interface AccessLine {
  who: string;
  records: number;
}
export interface InboxNote {
  id: string;
  author: string;
  signature: string;
  resource_type: string;
  title: string;
  received_at: number;
  resource: Record<string, unknown>;
}
export type ManualRecord =
  | { kind: 'condition'; text: string; onset: string | null }
  | { kind: 'medication'; text: string; dosage: string | null }
  | { kind: 'allergy'; text: string; reaction: string | null }
  | { kind: 'immunization'; text: string; date: string }
  | { kind: 'measurement'; text: string; value: number; unit: string; date: string };
export interface StartShare {
  categories: ShareCategory[];
  records: string[];
  expires_in_secs: number;
  policy: PolicyChoice;
  depth: number;
}
/** `answer_doctor`: `categories` only on a confirm narrower than the share (absent: all of it). */
export interface AnswerDoctor {
  id: string;
  accept: boolean;
  categories?: ShareCategory[];
}
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
  createVault: (a: { passphrase: string; name: string; relay_url: string }) =>
    call<Created>('create_vault', { ...a, licence: null }),
  restoreVault: (a: RestoreVault) => call<AppStatus>('restore_vault', a),
  unlock: (passphrase: string) => call<null>('unlock', { passphrase }),
  changePassphrase: (old: string, next: string) => call<null>('change_passphrase', { old, new: next }),
  checkRelay: (relay_url: string) => call<RelayCheck>('check_relay', { relay_url }),
  setRelay: (relay_url: string) => call<Settings>('set_relay', { relay_url }),
  setEnrollmentKey: (relay_url: string, key: string | null) =>
    call<Settings>('set_enrollment_key', { relay_url, key } satisfies SetEnrollmentKey),
  backupNow: () => call<BackupStatus>('backup_now'),
  exportBundle: (path: string) => call<number>('export_bundle', { path }),
  newQr: (share: string) => call<ShareStarted>('new_qr', { id: share }),
  lock: () => call<null>('lock'),
  setAutoLock: (secs: number | null) => call<Settings>('set_auto_lock', { secs }),
  timeline: () => call<TimelineRow[]>('timeline'),
  search: (query: string) => call<TimelineRow[]>('search', { query }),
  getRecord: (id: string) => call<RecordDetail>('get_record', { id }),
  trends: () => call<TrendsView>('trends'),
  /** The files of a record, numbered as `openAttachment` takes them. */
  recordFiles: (id: string) => call<DocumentAttachment[]>('record_files', { id }),
  /** File `index` of a record, as raw bytes. */
  openAttachment: (record_id: string, index: number) =>
    call<ArrayBuffer>('open_attachment', { record_id, index } satisfies AttachmentRef),
  addRecord: (r: ManualRecord) => call<string>('add_record', r),
  importFile: (path: string) => call<ImportReport>('import_file', { path }),
  startShare: (a: StartShare) => call<ShareStarted>('start_share', a),
  waitForDoctor: (id: string, wait_secs: number) =>
    call<DoctorAtTheDoor>('wait_for_doctor', { id, wait_secs }),
  answerDoctor: (id: string, accept: boolean, categories?: ShareCategory[]) =>
    call<string | null>('answer_doctor', (categories ? { id, accept, categories } : { id, accept }) satisfies AnswerDoctor),
  shares: () => call<ShareView[]>('shares'),
  accessLog: (id: string) => call<AccessLogView>('access_log', { id }),
  revoke: (share: string, relationship: string) => call<ShareView[]>('revoke', { share, relationship }),
  inbox: () => call<InboxNote[]>('check_inbox'),
  answerNote: (id: string, accept: boolean) => call<InboxNote[]>('answer_note', { id, accept }),
  forwardRequests: () => call<ForwardRequestRow[]>('forward_requests'),
  answerForward: (id: string, accept: boolean) =>
    call<ForwardRequestRow[]>('answer_forward', { id, accept }),
  delegations: (share: string) => call<DelegationRow[]>('delegations', { id: share }),
  revokeDelegation: (share: string, delegation: string) =>
    call<DelegationRow[]>('revoke_delegation', { share, delegation } satisfies RevokeDelegation),
  publishLink: (p: PublishLink) => call<PublishedLinkView>('publish_link', p),
  links: (share: string) => call<LinkRow[]>('links', { id: share }),
  deleteLink: (id: string) => call<null>('delete_link', { id }),
  trustedClinics: () => call<TrustedClinic[]>('trusted_clinics'),
  trustClinic: (text: string) => call<TrustedClinic[]>('trust_clinic', { text }),
  untrustClinic: (key: string) => call<TrustedClinic[]>('untrust_clinic', { key } satisfies ClinicRef),
  cancel: (id: string) => call<null>('cancel', { id }),
};

/** `untrust_clinic`'s argument. */
export interface ClinicRef {
  key: string;
}

export const EVENT = 'carekey://event';

/** Subscribes to the shell's events. */
export function onEvent(f: (e: AppEvent) => void): Promise<UnlistenFn> {
  return listen<AppEvent>(EVENT, (e) => f(e.payload));
}
