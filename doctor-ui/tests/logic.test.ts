import { describe, expect, it } from 'vitest';
import { bytesBase64, latest, lumaOf, scanErrorWords, statusWords, timeLeft, today } from '../src/logic';
import type { PatientLinkView } from '../src/ipc';

describe('doctor wording', () => {
  it('counts down in words and says when access ended', () => {
    expect(timeLeft(100, 200)).toBe('ended');
    expect(timeLeft(1000 + 3 * 86_400, 1000)).toBe('3 days left');
    expect(timeLeft(1000 + 3600 + 300, 1000)).toBe('1 h 5 min left');
    expect(timeLeft(1000 + 59 * 60, 1000)).toBe('59 min left');
  });
  it('names each status honestly', () => {
    const p = (status: string) => ({ status }) as PatientLinkView;
    expect(statusWords(p('active'))).toBe('access active');
    expect(statusWords(p('ended'))).toContain('removed from this device');
    expect(statusWords(p('expired'))).toContain('removed from this device');
  });
  it('says what a failed scan means', () => {
    expect(scanErrorWords('declined', 'x')).toContain('declined');
    expect(scanErrorWords('already_used', 'x')).toContain('already used');
    expect(scanErrorWords('expired', 'x')).toContain('expired');
    expect(scanErrorWords('relay_unreachable', 'the relay cannot be reached')).toBe('the relay cannot be reached');
  });
  it('picks the operation running now', () => {
    expect(latest({})).toBeNull();
    expect(latest({ a: { done: 1 }, b: { done: 2 } })).toEqual(['b', { done: 2 }]);
  });
  it('formats today for the date field', () => {
    expect(today(new Date(2026, 0, 5))).toBe('2026-01-05');
  });
});

describe('camera frames', () => {
  it('turns RGBA into grey with BT.601 weights', () => {
    const rgba = new Uint8ClampedArray([255, 255, 255, 255, 0, 0, 0, 255, 255, 0, 0, 255, 0, 255, 0, 255]);
    expect([...lumaOf(rgba)]).toEqual([255, 0, 76, 149]);
  });
  it('base64-encodes large frames like the Rust decoder expects', () => {
    const bytes = new Uint8Array(100_000).map((_, i) => i % 251);
    const b = bytesBase64(bytes);
    expect(b.length).toBe(Math.ceil(bytes.length / 3) * 4);
    expect(Uint8Array.from(atob(b), (c) => c.charCodeAt(0))).toEqual(bytes);
  });
});
