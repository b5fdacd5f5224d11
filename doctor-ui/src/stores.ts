import { writable } from 'svelte/store';
import type { AppError } from '@carekey/ui';
import type { AppEvent, AppStatus } from './ipc';

export type Screen = 'loading' | 'onboarding' | 'unlock' | 'main';
export type Tab = 'patients' | 'scan' | 'colleagues' | 'profile';

export const status = writable<AppStatus | null>(null);
export const screen = writable<Screen>('loading');
export const tab = writable<Tab>('patients');
/** The patient link whose chart is open (on the Patients tab), if any. */
export const openPatient = writable<string | null>(null);
/** The latest progress event of each operation. */
export const progress = writable<Record<string, Extract<AppEvent, { event: 'progress' }>>>({});
/** Patient links whose access ended while the app ran (the chart shows a banner). */
export const ended = writable<Record<string, number>>({});
/** Problems reported by background work. */
export const problem = writable<AppError | null>(null);

/** Applies one shell event to the stores. */
export function applyEvent(e: AppEvent) {
  switch (e.event) {
    case 'locked':
      openPatient.set(null);
      screen.set('unlock');
      break;
    case 'progress':
      progress.update((p) => ({ ...p, [e.op]: e }));
      break;
    case 'access_ended':
      ended.update((m) => ({ ...m, [e.patient]: e.purged }));
      break;
    case 'problem':
      problem.set({ code: e.code, message: e.message });
      break;
    case 'inbox_changed':
      break;
  }
}

/** Opens one patient's chart. */
export function showChart(id: string) {
  openPatient.set(id);
  tab.set('patients');
}

/** Measured figures the WebKit end-to-end test reads (window.__carekeyMetrics). */
export function metric(name: string, ms: number) {
  const w = globalThis as unknown as { __carekeyMetrics?: Record<string, number> };
  w.__carekeyMetrics = { ...(w.__carekeyMetrics ?? {}), [name]: ms };
}
