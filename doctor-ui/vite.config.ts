import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { svelteTesting } from '@testing-library/svelte/vite';

export default defineConfig({
  plugins: [svelte(), svelteTesting()],
  // The app loads from tauri://localhost: relative asset paths, no inline module preload.
  base: './',
  build: { target: 'safari16', modulePreload: { polyfill: false }, sourcemap: false },
  test: {
    environment: 'jsdom',
    globals: true,
    setupFiles: ['../ui/tests/setup.ts'],
    include: ['tests/**/*.test.ts'],
  },
});
