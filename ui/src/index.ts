// The shared UI package: components and types both Carekey apps use.
export { default as CategoryTabs } from './lib/CategoryTabs.svelte';
export { default as CheckCode } from './lib/CheckCode.svelte';
export { default as Dialog } from './lib/Dialog.svelte';
export { default as DocumentViewer } from './lib/DocumentViewer.svelte';
export { default as ErrorBanner } from './lib/ErrorBanner.svelte';
export { default as Progress } from './lib/Progress.svelte';
export { default as QrDisplay } from './lib/QrDisplay.svelte';
export { default as RecordRow } from './lib/RecordRow.svelte';
export { default as Timeline } from './lib/Timeline.svelte';
export { default as TrendChart } from './lib/TrendChart.svelte';
export { default as TrustedClinics } from './lib/TrustedClinics.svelte';
export { default as UnlockForm } from './lib/UnlockForm.svelte';
export { asAppError } from './lib/apperror';
export type { Tab } from './lib/CategoryTabs.svelte';
export { scale } from './lib/chart';
export { visibleRange } from './lib/virtual';
export type { AppError, DocKind, DocumentAttachment, Provenance, ShareCategory, TimelineRow, TrendPoint, TrustedClinic } from './types';
export {
  PASSPHRASE_MIN_CHARS,
  SHARE_CATEGORIES,
  STRENGTH_WORDS,
  confirmPositions,
  countdown,
  passphraseStrength,
  shareCategoryWords,
  when,
  wordsConfirmed,
} from './lib/words';
