import { writable } from 'svelte/store';
import type { AppError } from '@carekey/ui';
import type { AppEvent, AppStatus } from './ipc';

export type Screen = 'loading' | 'onboarding' | 'unlock' | 'main';
export type Tab = 'records' | 'share' | 'access' | 'inbox' | 'settings';

export const status = writable<AppStatus | null>(null);
export const screen = writable<Screen>('loading');
export const tab = writable<Tab>('records');
/** The latest progress event of each operation. */
export const progress = writable<Record<string, Extract<AppEvent, { event: 'progress' }>>>({});
export const inboxCount = writable(0);
/** Forward requests waiting for the patient's answer (from the inbox poll). */
export const forwardCount = writable(0);
/** Problems reported by background work. */
export const problem = writable<AppError | null>(null);

/** Applies one shell event to the stores. */
export function applyEvent(e: AppEvent) {
  switch (e.event) {
    case 'locked':
      screen.set('unlock');
      break;
    case 'progress':
      progress.update((p) => ({ ...p, [e.op]: e }));
      break;
    case 'inbox_changed':
      inboxCount.set(e.notes);
      forwardCount.set(e.forward_requests);
      break;
    case 'problem':
      problem.set({ code: e.code, message: e.message });
      break;
    case 'access_ended':
      break;
  }
}

/**
 * Records `name` as the time since `t0` once the browser has drawn the current DOM: a timeout
 * queued from an animation frame runs after that frame's style, layout and paint, so render
 * figures stop there, not at Svelte's `tick()`, which is before any layout. Nothing waits on
 * it: a hidden window draws no frames.
 */
export function metricAfterPaint(name: string, t0: number) {
  if (typeof requestAnimationFrame !== 'function') return;
  requestAnimationFrame(() => setTimeout(() => metric(name, performance.now() - t0), 0));
}

/** Measured figures the WebKit end-to-end test reads (window.__carekeyMetrics). */
export function metric(name: string, ms: number) {
  const w = globalThis as unknown as { __carekeyMetrics?: Record<string, number> };
  w.__carekeyMetrics = { ...(w.__carekeyMetrics ?? {}), [name]: ms };
}
