import { describe, expect, it } from 'vitest';
import {
  accessSentence,
  categoryTabs,
  confirmPositions,
  customDuration,
  countdown,
  passphraseStrength,
  shareCategoryWords,
  wordsConfirmed,
} from '../src/logic';
import type { TimelineRow } from '@carekey/ui';

const r = (category: string): TimelineRow => ({
  id: Math.random().toString(16), fhir_type: 'X', category, title: 't', date: null,
  status: null, detail: null, author: null, provenance: 'unsigned', provenance_label: 'unsigned',
  attachments: 0,
});

describe('screen logic', () => {
  it('confirm positions are three distinct ascending word indices', () => {
    let i = 0;
    const seq = [0.5, 0.5, 0.1, 0.9];
    const p = confirmPositions(24, () => seq[i++ % seq.length]);
    expect(p).toEqual([2, 12, 21]);
    for (let k = 0; k < 50; k++) {
      const q = confirmPositions(24);
      expect(new Set(q).size).toBe(3);
      expect(q.every((x) => x >= 0 && x < 24)).toBe(true);
    }
  });
  it('wordsConfirmed ignores case and spaces', () => {
    const phrase = 'alpha beta gamma delta';
    expect(wordsConfirmed(phrase, [0, 2], [' Alpha', 'gamma '])).toBe(true);
    expect(wordsConfirmed(phrase, [0, 2], ['alpha', 'delta'])).toBe(false);
  });
  it('category tabs count rows and hide empty categories', () => {
    const tabs = categoryTabs([r('condition'), r('condition'), r('vitals')], [
      { category: 'condition', label: 'Problems' },
      { category: 'allergy', label: 'Allergies' },
      { category: 'vitals', label: 'Vital signs' },
    ]);
    expect(tabs).toEqual([
      { key: 'all', label: 'All', count: 3 },
      { key: 'condition', label: 'Problems', count: 2 },
      { key: 'vitals', label: 'Vital signs', count: 1 },
    ]);
  });
  it('wording', () => {
    expect(countdown(299.7)).toBe('4:59');
    expect(countdown(-3)).toBe('0:00');
    expect(accessSentence('Dr. X', 1)).toBe('Dr. X fetched 1 record');
    expect(accessSentence('Dr. X', 12)).toBe('Dr. X fetched 12 records');
    expect(shareCategoryWords(['allergies', 'conditions'])).toBe('problems, allergies');
  });
  it('strength grows with length and variety', () => {
    expect(passphraseStrength('')).toBe(0);
    expect(passphraseStrength('correct horse battery staple')).toBeGreaterThanOrEqual(3);
  });
});

describe('customDuration', () => {
  it('reads days, fractions and commas, and words every refusal', () => {
    expect(customDuration('')).toEqual({ secs: null, error: null });
    expect(customDuration(' 3 ')).toEqual({ secs: 3 * 86_400, error: null });
    expect(customDuration('0,5')).toEqual({ secs: 43_200, error: null });
    expect(customDuration('366').secs).toBe(366 * 86_400);
    expect(customDuration('367').error).toBe('At most 366 days.');
    expect(customDuration('0').error).toMatch(/number of days/);
    expect(customDuration('-2').error).toMatch(/number of days/);
    expect(customDuration('1e400').error).toMatch(/number of days/);
    expect(customDuration('abc').error).toMatch(/number of days/);
    expect(customDuration('0.001').error).toBe('At least 5 minutes.');
  });
});
