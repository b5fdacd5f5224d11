// Wording and checks both apps' onboarding and lists use: the passphrase meter, the recovery
// words check, dates and countdowns. Display only: the Rust side validates every argument.

import type { ShareCategory } from '../types';

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

/** A share's categories in the order the screens list them, with their names. */
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

/** "problems, allergies": the categories in words. */
export function shareCategoryWords(cats: ShareCategory[]): string {
  return SHARE_CATEGORIES.filter((c) => cats.includes(c.key))
    .map((c) => c.label.toLowerCase())
    .join(', ');
}
