// The TypeScript IPC types against the Rust shapes (src/ipc.fixture.json, written by
// `cargo test -p carekey-doctor --test ipc_fixture`). Each sample below is typed, so a missing
// or extra key fails svelte-check; its key set must equal the Rust one.
import { describe, expect, it } from 'vitest';
import fixture from '../src/ipc.fixture.json';
import type {
  AllergyRow, AppError, AppEvent, AppStatus, ChartRecord, ChartSummary, ChartView, ColleagueView,
  ComponentValue, Created, DocumentAttachment, DocumentRow, ForwardOutcome, InviteView, LabComponent,
  Forward, LabRow, MedicationRow, OpenSmartLink, PatientLinkView, Point, ProblemRow, ProfileView, ReferenceRange, ScanView, SetEnrollmentKey,
  SentNoteView, Series, SeriesLine, SmartOpenView, TimelineRow, VitalRow, WriteBack, ClinicRef, TrustedClinic,
} from '../src/ipc';

const hex = 'ab'.repeat(16);
const link: PatientLinkView = {
  id: hex, name: 'n', trust: 't', share: hex, expires_at: 2, status: 'active', records: 1, fetched_at: 1,
};
const range: ReferenceRange = { low: 1, high: 2, unit: null, text: null };
const component: LabComponent = { name: 'n', code: null, value: 1, unit: null, value_text: null, reference_range: null, interpretation: null };
const point: Point = { t: 1, date: 'd', value: 1, id: hex };
const line: SeriesLine = { name: 'n', code: null, unit: null, points: [point], range };
const attachment: DocumentAttachment = { id: null, content_type: null, title: null, size: null, kind: 'pdf', url: null };
const cv: ComponentValue = { name: 'n', code: null, value: 1, unit: null };
const summary: ChartSummary = { problems: [], medications: [], allergies: [], vitals: [] };
const row: TimelineRow = {
  id: hex, fhir_type: 'Condition', category: 'condition', title: 't', date: null,
  status: null, detail: null, author: null, provenance: 'unsigned', provenance_label: 'unsigned',
  attachments: 0,
};
const record: ChartRecord = {
  summary: {
    id: hex, fhir_type: 'Observation', fhir_id: 'x', category: 'vitals', title: 't', date: null,
    key_values: [], codes: [], author: null, origin: { kind: 'shared' }, signature: { status: 'unsigned' },
    attachments: [],
  },
  resource: {},
};

const samples: Record<string, object> = {
  TrustedClinic: { name: 'St. Mary', key: 'ab'.repeat(32), added_at: 1 } satisfies TrustedClinic,
  ClinicRef: { key: 'ab'.repeat(32) } satisfies ClinicRef,
  AppError: { code: 'c', message: 'm' } satisfies AppError,
  AppStatus: { vault_exists: true, unlocked: true, default_relay_url: '' } satisfies AppStatus,
  Created: { words: 'w' } satisfies Created,
  ProfileView: { name: 'n', role: 'doctor', licence: null, fingerprint: 'f', appears_as: 'a', card_text: 'CAREKEY-CARD:', relay_url: 'u', enrolled_relays: [] } satisfies ProfileView,
  SetEnrollmentKey: { relay_url: 'u', key: 'k' } satisfies SetEnrollmentKey,
  ScanView: { scan: hex, check_code: '123-4567' } satisfies ScanView,
  PatientLinkView: link,
  SmartOpenView: { patient: link, skipped: [] } satisfies SmartOpenView,
  OpenSmartLink: { text: 'shlink:/', passcode: null } satisfies OpenSmartLink,
  Forward: { patient: 'ab', invite: 'i', reason: 'r', categories: ['allergies'] } satisfies Forward,
  ChartView: { patient: link, rows: [row], summary, labs: [], vitals: [], lab_trends: [], documents: [], categories: ['allergies'] } satisfies ChartView,
  ChartSummary: summary,
  ProblemRow: { id: hex, title: 't', clinical_status: null, verification_status: null, severity: null, onset: null, sort_key: null } satisfies ProblemRow,
  MedicationRow: { id: hex, fhir_type: 'MedicationStatement', title: 't', status: null, dosage: null, date: null, sort_key: null } satisfies MedicationRow,
  AllergyRow: { id: hex, title: 't', criticality: null, clinical_status: null, category: null, allergy_type: null, reactions: [], onset: null } satisfies AllergyRow,
  VitalRow: { kind: 'heart_rate', label: 'l', id: hex, code: null, value: 1, unit: null, value_text: 'v', components: [cv], date: null, sort_key: null } satisfies VitalRow,
  LabRow: {
    id: hex, title: 't', code: null, category: null, status: null, value: 1, unit: null, value_text: null,
    reference_range: range, interpretation: 'H', interpretation_computed: true, interpretation_text: null,
    components: [component], members: 0, note: null, date: null, sort_key: null,
  } satisfies LabRow,
  ReferenceRange: range,
  LabComponent: component,
  Series: { key: 'k', kind: null, title: 't', unit: null, lines: [line] } satisfies Series,
  SeriesLine: line,
  Point: point,
  DocumentRow: { id: hex, fhir_type: 'DocumentReference', title: 't', date: null, sort_key: null, author: null, status: null, kind: 'pdf', attachments: [attachment] } satisfies DocumentRow,
  DocumentAttachment: attachment,
  ChartRecord: record,
  ChartRecordSummary: record.summary,
  SentNoteView: { id: hex, patient: hex, patient_name: 'n', resource_type: 'Communication', title: 't', sent_at: 1, delivery: 'd' } satisfies SentNoteView,
  InviteView: { invite: hex, qr_svg: '', text: '', code: '123-4567', expires_at: 1 } satisfies InviteView,
  ColleagueView: { name: 'n', licence: null, trust: 't', code: '123-4567' } satisfies ColleagueView,
  'AppEvent.locked': { event: 'locked' } satisfies AppEvent,
  'AppEvent.progress': { event: 'progress', op: hex, stage: 'fetching', done: 1, total: 2 } satisfies AppEvent,
  'AppEvent.access_ended': { event: 'access_ended', patient: hex, purged: 1 } satisfies AppEvent,
  'AppEvent.problem': { event: 'problem', code: 'c', message: 'm' } satisfies AppEvent,
  CreateVault: { passphrase: 'p', name: 'n', licence: null, relay_url: 'u' },
  'WriteBack.note': { kind: 'note', patient: hex, text: 't' } satisfies WriteBack,
  'WriteBack.blood_pressure': { kind: 'blood_pressure', patient: hex, systolic: 1, diastolic: 1, date: 'd' } satisfies WriteBack,
  'WriteBack.medication': { kind: 'medication', patient: hex, text: 't', dosage: null } satisfies WriteBack,
};
// Whole values (unit variants), not key sets.
const values: Record<string, ForwardOutcome> = {
  'ForwardOutcome.waiting_for_patient': { status: 'waiting_for_patient' },
  'ForwardOutcome.forwarded': { status: 'forwarded' },
};

const fx = fixture as unknown as Record<string, unknown>;

describe('IPC types mirror the Rust shapes', () => {
  for (const [name, sample] of Object.entries(samples)) {
    it(name, () => {
      expect(fx[name], `${name} is in the fixture`).toBeDefined();
      expect(Object.keys(sample).sort()).toEqual(fx[name]);
    });
  }
  for (const [name, v] of Object.entries(values)) {
    it(name, () => expect(fx[name]).toEqual(v));
  }
  it('every Rust shape has a TypeScript sample', () => {
    const rust = Object.keys(fx).filter((k) => k !== 'commands');
    expect(rust.sort()).toEqual([...Object.keys(samples), ...Object.keys(values)].sort());
  });
  it('every command the UI calls is registered by the shell', async () => {
    const src = (await import('../src/ipc.ts?raw')).default as string;
    const called = [...src.matchAll(/call<[^>]*>\('([a-z_]+)'/g)].map((m) => m[1]);
    expect(called.length).toBeGreaterThan(15);
    for (const c of called) expect(fx.commands as string[]).toContain(c);
    // And every registered command is called by some screen through ipc.ts.
    for (const c of fx.commands as string[]) expect(called).toContain(c);
  });
});
