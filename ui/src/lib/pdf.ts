/// <reference types="vite/client" />
// Renders a PDF into canvases with pdf.js. This module is imported only when a PDF is opened,
// so pdf.js (several hundred KB) stays out of the apps' first load.
//
// pdf.js runs with `isEvalSupported: false` (the apps' CSP has no 'unsafe-eval') and its worker
// is served from the app itself ('self' in worker-src); if a web view cannot start the worker,
// pdf.js falls back to parsing on the main thread, which is slower but shows the same pages.
import { GlobalWorkerOptions, getDocument } from 'pdfjs-dist';
import workerUrl from 'pdfjs-dist/build/pdf.worker.min.mjs?url';

GlobalWorkerOptions.workerSrc = workerUrl;

/** Most pages drawn at once; a longer file says how many more it has. */
export const MAX_PAGES = 50;

export interface RenderedPdf {
  pages: number;
  drawn: number;
  /** Each drawn page's text, for screen readers and search (empty for a scanned page). */
  text: string[];
}

/** Draws the first pages of `data` into `host`, one canvas per page, `width` CSS pixels wide. */
export async function renderPdf(data: ArrayBuffer, host: HTMLElement, width: number): Promise<RenderedPdf> {
  const doc = await getDocument({
    data: new Uint8Array(data),
    isEvalSupported: false,
    // A file must not make the viewer fetch anything (fonts, CMaps, links) from elsewhere.
    disableAutoFetch: true,
    disableStream: true,
    useSystemFonts: true,
  }).promise;
  const pages = doc.numPages;
  const drawn = Math.min(pages, MAX_PAGES);
  const text: string[] = [];
  const ratio = window.devicePixelRatio || 1;
  for (let n = 1; n <= drawn; n++) {
    const page = await doc.getPage(n);
    const base = page.getViewport({ scale: 1 });
    const viewport = page.getViewport({ scale: (width / base.width) * ratio });
    const canvas = document.createElement('canvas');
    canvas.width = Math.floor(viewport.width);
    canvas.height = Math.floor(viewport.height);
    canvas.style.width = `${Math.floor(viewport.width / ratio)}px`;
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', `Page ${n} of ${pages}`);
    canvas.dataset.page = String(n);
    host.appendChild(canvas);
    await page.render({ canvas, viewport }).promise;
    const content = await page.getTextContent();
    text.push(
      content.items
        .map((i) => ('str' in i ? i.str : ''))
        .join(' ')
        .trim(),
    );
  }
  await doc.destroy();
  return { pages, drawn, text };
}
