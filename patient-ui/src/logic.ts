// Display helpers of the patient screens: wording, counts, presets. No crypto, no rules the
// Rust side enforces (it validates every argument again).
import type { TimelineRow } from '@carekey/ui';
import type { CategoryInfo, PolicyChoice, ShareCategory } from './ipc';

/** Mirror of `carekey_app::validate::passphrase_strength` (0 very weak .. 4 strong), for the
 * meter only; the fixture test checks both give the same scores. */
export function passphraseStrength(value: string): number {
  const chars = Array.from(value);
  let pool = 0;
  if (chars.some((c) => c >= 'a' && c <= 'z')) pool += 26;
  if (chars.some((c) => c >= 'A' && c <= 'Z')) pool += 26;
  if (chars.some((c) => c >= '0' && c <= '9')) pool += 10;
  if (chars.some((c) => c === ' ' || /^[!-/:-@[-`{-~]$/.test(c))) pool += 33;
  if (chars.some((c) => (c.codePointAt(0) ?? 0) > 0x7f)) pool += 100;
  let effective = 0;
  let prev: number | null = null;
  for (const c of chars) {
    const cp = c.codePointAt(0) ?? 0;
    if (prev === null || (prev !== cp && cp !== prev + 1)) effective += 1;
    prev = cp;
  }
  const bits = effective * Math.log2(Math.max(1, pool));
  if (bits < 28) return 0;
  if (bits < 40) return 1;
  if (bits < 60) return 2;
  if (bits < 80) return 3;
  return 4;
}

export const STRENGTH_WORDS = ['very weak', 'weak', 'fair', 'good', 'strong'];
export const PASSPHRASE_MIN_CHARS = 10;

/** Three distinct word positions (0-based, ascending) to confirm, from `random` in [0,1). */
export function confirmPositions(count: number, random: () => number = Math.random): number[] {
  const picked = new Set<number>();
  while (picked.size < Math.min(3, count)) picked.add(Math.floor(random() * count));
  return [...picked].sort((a, b) => a - b);
}

/** Whether the typed words match the phrase at those positions (case and spaces ignored). */
export function wordsConfirmed(phrase: string, positions: number[], typed: string[]): boolean {
  const words = phrase.trim().split(/\s+/);
  return positions.every((p, i) => (typed[i] ?? '').trim().toLowerCase() === words[p]);
}

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

export const SHARE_CATEGORIES: { key: ShareCategory; label: string }[] = [
  { key: 'conditions', label: 'Problems' },
  { key: 'medications', label: 'Medications' },
  { key: 'allergies', label: 'Allergies' },
  { key: 'immunizations', label: 'Immunizations' },
  { key: 'observations', label: 'Lab results and vital signs' },
  { key: 'procedures', label: 'Procedures' },
  { key: 'encounters', label: 'Visits' },
  { key: 'documents', label: 'Documents' },
  { key: 'notes', label: "Doctors' notes" },
  { key: 'demographics', label: 'Personal details' },
  { key: 'other', label: 'Everything else' },
];

export const EXPIRY_PRESETS: { label: string; secs: number }[] = [
  { label: '1 hour', secs: 3600 },
  { label: '1 day', secs: 86_400 },
  { label: '1 week', secs: 7 * 86_400 },
  { label: '30 days', secs: 30 * 86_400 },
];

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

/** "12 Mar 2026, 10:32" in the user's locale. */
export function when(unixSecs: number): string {
  return new Date(unixSecs * 1000).toLocaleString(undefined, {
    dateStyle: 'medium',
    timeStyle: 'short',
  });
}

/** "4:59" from seconds left (never negative). */
export function countdown(secsLeft: number): string {
  const s = Math.max(0, Math.floor(secsLeft));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** "Dr. X fetched 12 records" (the access log in words). */
export function accessSentence(who: string, records: number): string {
  return `${who} fetched ${records} record${records === 1 ? '' : 's'}`;
}

export const REVOKE_EXPLANATION =
  'They keep what they already fetched; new versions are under a new key they do not have.';

/** Share categories in their screen order, as words. */
export function shareCategoryWords(cats: ShareCategory[]): string {
  return SHARE_CATEGORIES.filter((c) => cats.includes(c.key))
    .map((c) => c.label.toLowerCase())
    .join(', ');
}
