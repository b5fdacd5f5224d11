import type { AppError } from '../types';

/** Any rejection as `{code, message}` (Tauri's own errors arrive as strings). */
export function asAppError(e: unknown): AppError {
  if (e && typeof e === 'object' && 'code' in e && 'message' in e) {
    const o = e as { code: unknown; message: unknown };
    return { code: String(o.code), message: String(o.message) };
  }
  return { code: 'internal', message: typeof e === 'string' ? e : 'something went wrong inside the app' };
}
