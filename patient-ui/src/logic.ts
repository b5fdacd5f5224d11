// Display helpers of the patient screens: wording, counts, presets. No crypto, no rules the
// Rust side enforces (it validates every argument again).
import type { TimelineRow } from '@carekey/ui';
import type { CategoryInfo, GrantScope, PolicyChoice, ShareCategory } from './ipc';
import { SHARE_CATEGORIES as KINDS } from '@carekey/ui';

// Shared with the doctor app (the passphrase meter, recovery words, dates).
export {
  PASSPHRASE_MIN_CHARS,
  STRENGTH_WORDS,
  confirmPositions,
  countdown,
  passphraseStrength,
  when,
  SHARE_CATEGORIES,
  shareCategoryWords,
  wordsConfirmed,
} from '@carekey/ui';

/** Tabs: "All" then every category in the shell's order, with counts from the rows. */
export function categoryTabs(rows: TimelineRow[], categories: CategoryInfo[]) {
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.category, (counts.get(r.category) ?? 0) + 1);
  return [
    { key: 'all', label: 'All', count: rows.length },
    ...categories
      .map((c) => ({ key: c.category, label: c.label, count: counts.get(c.category) ?? 0 }))
      .filter((t) => t.count > 0),
  ];
}


export const EXPIRY_PRESETS: { label: string; secs: number }[] = [
  { label: '1 hour', secs: 3600 },
  { label: '1 day', secs: 86_400 },
  { label: '1 week', secs: 7 * 86_400 },
  { label: '30 days', secs: 30 * 86_400 },
];

/** At most this many search matches are listed in the Share screen's record picker. */
export const PICKER_MAX_RESULTS = 20;

/** The longest custom share, in days (the shell's `SHARE_MAX_SECS`). */
export const SHARE_MAX_DAYS = 366;

/**
 * The Share screen's "number of days" field: seconds, or a sentence saying what to type.
 * Empty means "use the preset". Fractions are allowed (0.5 = 12 hours), down to the shell's
 * five minutes.
 */
export function customDuration(text: string): { secs: number | null; error: string | null } {
  const t = text.trim();
  if (!t) return { secs: null, error: null };
  const days = Number(t.replace(',', '.'));
  if (!Number.isFinite(days) || days <= 0) return { secs: null, error: 'Type a number of days, for example 3.' };
  if (days > SHARE_MAX_DAYS) return { secs: null, error: `At most ${SHARE_MAX_DAYS} days.` };
  const secs = Math.round(days * 86_400);
  if (secs < 300) return { secs: null, error: 'At least 5 minutes.' };
  return { secs, error: null };
}

export const POLICY_WORDS: Record<PolicyChoice, string> = {
  never: 'They cannot pass it on',
  ask: 'They ask me before passing it on',
  allowed: 'They may pass it on to colleagues',
};

export const AUTO_LOCK_CHOICES: { label: string; secs: number | null }[] = [
  { label: '1 minute', secs: 60 },
  { label: '5 minutes', secs: 300 },
  { label: '15 minutes', secs: 900 },
  { label: '1 hour', secs: 3600 },
  { label: 'Never', secs: null },
];

/** "Dr. X fetched 12 records" (the access log in words). */
export function accessSentence(who: string, records: number): string {
  return `${who} fetched ${records} record${records === 1 ? '' : 's'}`;
}

export const REVOKE_EXPLANATION =
  'They keep what they already fetched; new versions are under a new key they do not have.';

/** What a grantee's grant lets them read, in words ("Sees only: Problems, Medications"). */
export function grantScopeWords(s: GrantScope): string {
  if (s.kind === 'everything') return 'Sees everything in this share';
  if (s.kind === 'not_recorded') {
    // Not guessed: a confirm narrowed before the phone kept scopes would be overstated.
    return 'What they can see was not recorded on this phone (shared before it kept that); revoke and share again to be sure';
  }
  const kinds = KINDS.filter((c) => s.categories.includes(c.key)).map((c) => c.label);
  if (s.records > 0) kinds.push(`${s.records} ${s.records === 1 ? 'record' : 'records'} picked one by one`);
  return kinds.length > 0 ? `Sees only: ${kinds.join(', ')}` : 'Sees nothing in this share';
}

/** Whether this device holds an enrollment key for the relay it uses (docs/relay.md
 * "Enrollment"); the app lists relays by base URL, without a trailing slash. */
export function holdsEnrollmentKey(s: { relay_url: string; enrolled_relays: string[] } | null): boolean {
  if (!s) return false;
  return s.enrolled_relays.includes(s.relay_url.replace(/\/+$/, ''));
}
