// The TypeScript IPC types against the Rust shapes (src/ipc.fixture.json, written by
// `cargo test -p carekey-patient --test ipc_fixture`). Each sample below is typed, so a
// missing or extra key fails svelte-check; its key set must equal the Rust one.
import { describe, expect, it } from 'vitest';
import fixture from '../src/ipc.fixture.json';
import type {
  AccessLine,
  AccessLogView,
  AnswerDoctor,
  LinkRow,
  PublishLink,
  PublishedLinkView,
  AppEvent,
  AppStatus,
  BackupStatus,
  RelayCheck,
  RestoreVault,
  CategoryInfo,
  DoctorAtTheDoor,
  DelegationRow,
  ForwardRequestRow,
  Grantee,
  GrantScope,
  RevokeDelegation,
  ImportReport,
  InboxNote,
  ManualRecord,
  RecordDetail,
  Settings,
  SetEnrollmentKey,
  ShareStarted,
  ShareView,
  StartShare,
  TimelineRow,
  TrendsView,
  AppError,
  ClinicRef,
  TrustedClinic,
} from '../src/ipc';
import { passphraseStrength } from '../src/logic';

const hex = 'ab'.repeat(16);
const grantee: Grantee = { relationship: hex, name: 'n', trust: 't', status: 'active', expires_at: 1, scope: { kind: 'everything' } };
const row: TimelineRow = {
  id: hex, fhir_type: 'Condition', category: 'condition', title: 't', date: null,
  status: null, detail: null, author: null, provenance: 'unsigned', provenance_label: 'unsigned',
  attachments: 0,
};
const detail: RecordDetail = {
  summary: {
    id: hex, fhir_type: 'Observation', fhir_id: 'x', category: 'vitals', title: 't', date: null,
    key_values: [], codes: [], author: null, origin: { kind: 'self_entered' },
    signature: { status: 'unsigned' }, attachments: [],
  },
  resource: {},
};
const samples: Record<string, object> = {
  TrustedClinic: { name: 'St. Mary', key: 'ab'.repeat(32), added_at: 1 } satisfies TrustedClinic,
  ClinicRef: { key: 'ab'.repeat(32) } satisfies ClinicRef,
  AppError: { code: 'c', message: 'm' } satisfies AppError,
  AppStatus: { vault_exists: true, unlocked: true, default_relay_url: '', categories: [], settings: null } satisfies AppStatus,
  RelayCheck: { relay_url: 'u', reachable: true, message: 'm' } satisfies RelayCheck,
  BackupStatus: { version: 1, at: 2 } satisfies BackupStatus,
  RestoreVault: { phrase: 'w', new_passphrase: 'p', name: 'n', relay_url: 'u' } satisfies RestoreVault,
  ChangePassphrase: { old: 'o', new: 'n' },
  CategoryInfo: { category: 'condition', label: 'Problems' } satisfies CategoryInfo,
  Settings: { version: 1, name: 'n', licence: null, relay_url: 'u', auto_lock_secs: 300, last_backup_at: null, enrolled_relays: [] } satisfies Settings,
  SetEnrollmentKey: { relay_url: 'u', key: 'k' } satisfies SetEnrollmentKey,
  ImportReport: { records: 1, replaced: 0, attachments: 0, by_type: {} } satisfies ImportReport,
  TimelineRow: row,
  RecordDetail: detail,
  RecordSummary: detail.summary,
  TrendsView: { vitals: [], labs: [] } satisfies TrendsView,
  ShareStarted: {
    share: hex, pairing: hex, qr_svg: '', qr_text: '', qr_expires_at: 1, expires_at: 2, records: 1,
    attachments: 0, categories: ['conditions'],
  } satisfies ShareStarted,
  DoctorAtTheDoor: { pairing: hex, name: 'n', licence: null, check_code: '123-4567', attested: false, trust: 't' } satisfies DoctorAtTheDoor,
  Grantee: grantee,
  'GrantScope.everything': { kind: 'everything' } satisfies GrantScope,
  'GrantScope.only': { kind: 'only', categories: ['conditions'], records: 1 } satisfies GrantScope,
  'GrantScope.not_recorded': { kind: 'not_recorded' } satisfies GrantScope,
  ShareView: {
    id: hex, created_at: 1, expires_at: 2, policy: 'ask', depth: 0, categories: [], records: 1, attachments: 0,
    grantees: [grantee],
  } satisfies ShareView,
  AccessLine: { who: 'n', records: 1 } satisfies AccessLine,
  AccessLogView: { lines: [], downloads: ['d'], alerts: ['a'] } satisfies AccessLogView,
  PublishLink: { share: hex, passcode: true, expires_in_secs: 86400, label: null } satisfies PublishLink,
  PublishedLinkView: { id: hex, qr_svg: '', shlink: 'shlink:/', passcode: '1', expires_at: 2, files: 1, attachments: 1, left_out: 1, left_out_note: 'n', warning: 'w' } satisfies PublishedLinkView,
  LinkRow: { id: hex, label: null, expires_at: 2, status: 'active', files: 1 } satisfies LinkRow,
  ForwardRequestRow: { id: hex, from: 'a', colleague: 'b', colleague_trust: 't', share: hex, reason: 'r', categories: [], records: 0 } satisfies ForwardRequestRow,
  DelegationRow: { id: hex, by: 'a', colleague: 'b', root: hex, level: 1, expires_at: 2, status: 'active' } satisfies DelegationRow,
  RevokeDelegation: { share: hex, delegation: hex } satisfies RevokeDelegation,
  InboxNote: { id: hex, author: 'a', signature: 's', resource_type: 'Observation', title: 't', received_at: 1, resource: {} } satisfies InboxNote,
  'AppEvent.locked': { event: 'locked' } satisfies AppEvent,
  'AppEvent.progress': { event: 'progress', op: hex, stage: 'importing', done: 1, total: 2 } satisfies AppEvent,
  'AppEvent.inbox_changed': { event: 'inbox_changed', notes: 1, forward_requests: 0 } satisfies AppEvent,
  'AppEvent.access_ended': { event: 'access_ended', patient: hex, purged: 1 } satisfies AppEvent,
  'AppEvent.problem': { event: 'problem', code: 'c', message: 'm' } satisfies AppEvent,
  StartShare: { categories: ['conditions'], records: [], expires_in_secs: 86400, policy: 'ask', depth: 0 } satisfies StartShare,
  AnswerDoctor: { id: hex, accept: true, categories: ['allergies'] } satisfies AnswerDoctor,
  CreateVault: { passphrase: 'p', name: 'n', relay_url: 'u', licence: null },
  'ManualRecord.condition': { kind: 'condition', text: 't', onset: null } satisfies ManualRecord,
  'ManualRecord.medication': { kind: 'medication', text: 't', dosage: null } satisfies ManualRecord,
  'ManualRecord.allergy': { kind: 'allergy', text: 't', reaction: null } satisfies ManualRecord,
  'ManualRecord.immunization': { kind: 'immunization', text: 't', date: '2026-01-01' } satisfies ManualRecord,
  'ManualRecord.measurement': { kind: 'measurement', text: 't', value: 1, unit: 'kg', date: '2026-01-01' } satisfies ManualRecord,
};

const fx = fixture as unknown as Record<string, unknown>;

describe('IPC types mirror the Rust shapes', () => {
  for (const [name, sample] of Object.entries(samples)) {
    it(name, () => {
      expect(fx[name], `${name} is in the fixture`).toBeDefined();
      expect(Object.keys(sample).sort()).toEqual(fx[name]);
    });
  }
  it('every Rust shape has a TypeScript sample', () => {
    const rust = Object.keys(fx).filter((k) => k !== 'strength' && k !== 'commands');
    expect(rust.sort()).toEqual(Object.keys(samples).sort());
  });
  it('the strength meter scores like the Rust validator', () => {
    for (const [s, score] of fx.strength as [string, number][]) {
      expect(passphraseStrength(s), JSON.stringify(s)).toBe(score);
    }
  });
  it('every command the UI calls is registered by the shell', async () => {
    const src = (await import('../src/ipc.ts?raw')).default as string;
    const called = [...src.matchAll(/call<[^>]*>\('([a-z_]+)'/g)].map((m) => m[1]);
    expect(called.length).toBeGreaterThan(10);
    for (const c of called) expect(fx.commands as string[]).toContain(c);
  });
});
