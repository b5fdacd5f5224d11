// Display helpers of the doctor screens: wording and countdowns. No crypto, no rules the Rust
// side enforces (it validates every argument again).
import type { PatientLinkView } from './ipc';

export { countdown, when } from '@carekey/ui';

/** "3 days left", "2 h 5 min left", "ended". */
export function timeLeft(expiresAt: number, now: number): string {
  const s = Math.floor(expiresAt - now);
  if (s <= 0) return 'ended';
  const d = Math.floor(s / 86_400);
  if (d >= 2) return `${d} days left`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h} h ${m} min left` : `${m} min left`;
}

/** Whether a Patients entry is an import from a SMART Health Link or Card (its `share` is
 * `smart:<id>`): a copy with no expiry and nothing to refresh from a relay. */
export function isSmartEntry(p: PatientLinkView | null | undefined): boolean {
  return !!p && p.share.startsWith('smart:');
}

/** Why a SMART entry has no write-back: the app layer's `no_write_back` message, word for word
 * (src-tauri/app/src/session/smart_source.rs `NO_WRITE_BACK`). */
export const NO_WRITE_BACK = "this patient's records came from a SMART Health Link; there is no way to send back";

/** The status of a patient link in words. */
export function statusWords(p: PatientLinkView): string {
  switch (p.status) {
    case 'active':
      return 'access active';
    case 'expired':
      return 'access expired: records removed from this device';
    case 'ended':
      return 'access ended by the patient: records removed from this device';
    default:
      return p.status;
  }
}

/** What a failed scan means, in words (the shell's message for anything else). */
export function scanErrorWords(code: string, message: string): string {
  switch (code) {
    case 'declined':
      return 'The patient declined on their phone. Nothing was shared.';
    case 'already_used':
      return 'This QR code was already used. Ask the patient to show a new one.';
    case 'expired':
      return 'This QR code has expired. Ask the patient to show a new one.';
    case 'no_qr':
      return 'No QR code was found in that image. Try a sharper or larger picture.';
    default:
      return message;
  }
}

/** Whether pasted text is a SMART Health Link (`shlink:/…`, a viewer URL `…#shlink:/…`) or a
 * SMART Health Card (`shc:/…`), which go to `openSmartLink` instead of `scanText`. */
export function isSmartText(text: string): boolean {
  const t = text.trim().toLowerCase();
  return t.startsWith('shlink:/') || t.startsWith('shc:/') || (/^https?:\/\//.test(t) && t.includes('#shlink:/'));
}

/** The most recent progress event (the one running now). */
export function latest<T extends { done: number }>(byOp: Record<string, T>): [string, T] | null {
  const keys = Object.keys(byOp);
  if (keys.length === 0) return null;
  const k = keys[keys.length - 1];
  return [k, byOp[k]];
}

/** Today as YYYY-MM-DD (local). */
export function today(d: Date = new Date()): string {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/** Grey value of each RGBA pixel (ITU-R BT.601 weights in integers), the frame `scanFrame`
 * takes. */
export function lumaOf(rgba: Uint8ClampedArray | Uint8Array): Uint8Array {
  const out = new Uint8Array(rgba.length >> 2);
  for (let i = 0, j = 0; j < out.length; i += 4, j++) {
    out[j] = (rgba[i] * 77 + rgba[i + 1] * 150 + rgba[i + 2] * 29) >> 8;
  }
  return out;
}

/** Standard base64 of bytes (in chunks: `String.fromCharCode` takes a bounded argument list). */
export function bytesBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}
