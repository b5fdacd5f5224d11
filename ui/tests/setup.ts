import '@testing-library/jest-dom/vitest';

// jsdom has no layout: a ResizeObserver that never reports (Svelte's bind:clientHeight uses it).
if (!('ResizeObserver' in globalThis)) {
  class NoResize {
    observe() {}
    unobserve() {}
    disconnect() {}
  }
  (globalThis as unknown as { ResizeObserver: unknown }).ResizeObserver = NoResize;
}
