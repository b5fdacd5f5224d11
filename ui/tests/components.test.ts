import { render, screen, fireEvent } from '@testing-library/svelte';
import { describe, expect, it, vi } from 'vitest';
import CategoryTabs from '../src/lib/CategoryTabs.svelte';
import CheckCode from '../src/lib/CheckCode.svelte';
import DocumentViewer from '../src/lib/DocumentViewer.svelte';
import ErrorBanner from '../src/lib/ErrorBanner.svelte';
import Progress from '../src/lib/Progress.svelte';
import QrDisplay from '../src/lib/QrDisplay.svelte';
import Timeline from '../src/lib/Timeline.svelte';
import TrendChart from '../src/lib/TrendChart.svelte';
import { scale } from '../src/lib/chart';
import { visibleRange } from '../src/lib/virtual';
import type { DocumentAttachment, TimelineRow } from '../src/types';

function row(i: number): TimelineRow {
  return {
    id: i.toString(16).padStart(64, '0'),
    fhir_type: 'Condition',
    category: 'condition',
    title: `Condition ${i}`,
    date: '2024-01-02',
    status: 'active',
    detail: null,
    author: null,
    provenance: 'imported_unsigned',
    provenance_label: 'imported, unsigned',
    attachments: 0,
  };
}

describe('shared components', () => {
  it('ErrorBanner shows the message as an alert and can be dismissed', async () => {
    const ondismiss = vi.fn();
    render(ErrorBanner, { error: { code: 'wrong_passphrase', message: 'wrong passphrase' }, ondismiss });
    expect(screen.getByRole('alert')).toHaveTextContent('wrong passphrase');
    expect(screen.getByRole('alert')).toHaveAttribute('data-code', 'wrong_passphrase');
    await fireEvent.click(screen.getByRole('button', { name: /dismiss/i }));
    expect(ondismiss).toHaveBeenCalled();
  });

  it('ErrorBanner renders nothing without an error', () => {
    render(ErrorBanner, { error: null });
    expect(screen.queryByRole('alert')).toBeNull();
  });

  it('CheckCode reads digit by digit', () => {
    render(CheckCode, { code: '123-4567' });
    expect(screen.getByLabelText('Check code 1 2 3, 4 5 6 7')).toHaveTextContent('123-4567');
  });

  it('Progress is labelled and counts', () => {
    render(Progress, { done: 5, total: 20, label: 'Importing' });
    expect(screen.getByRole('progressbar', { name: 'Importing' })).toBeInTheDocument();
    expect(screen.getByText('5 of 20 (25%)')).toBeInTheDocument();
  });

  it('QrDisplay shows the SVG as an image, not as markup in the page', () => {
    const svg = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><rect/></svg>';
    const { container } = render(QrDisplay, { svg, label: 'QR code to show the doctor' });
    const img = screen.getByRole('img', { name: 'QR code to show the doctor' }) as HTMLImageElement;
    expect(img.src.startsWith('data:image/svg+xml')).toBe(true);
    expect(container.querySelector('script')).toBeNull();
    expect(container.querySelector('svg')).toBeNull();
  });

  it('Timeline draws only the visible rows of thousands', () => {
    const rows = Array.from({ length: 5000 }, (_, i) => row(i));
    render(Timeline, { rows });
    const drawn = screen.getAllByTestId('record-row');
    expect(drawn.length).toBeGreaterThan(0);
    expect(drawn.length).toBeLessThan(60);
    expect(screen.getByTestId('timeline')).toHaveAttribute('data-count', '5000');
  });

  it('Timeline opens a row', async () => {
    const onopen = vi.fn();
    render(Timeline, { rows: [row(1)], onopen });
    await fireEvent.click(screen.getByRole('button', { name: /Condition 1/ }));
    expect(onopen).toHaveBeenCalledWith(row(1).id);
  });

  it('CategoryTabs selects by click and arrow keys', async () => {
    const onselect = vi.fn();
    const tabs = [
      { key: 'all', label: 'All', count: 3 },
      { key: 'condition', label: 'Problems', count: 2 },
    ];
    render(CategoryTabs, { tabs, selected: 'all', onselect });
    expect(screen.getByRole('tab', { name: /All/ })).toHaveAttribute('aria-selected', 'true');
    await fireEvent.click(screen.getByRole('tab', { name: /Problems/ }));
    expect(onselect).toHaveBeenLastCalledWith('condition');
    await fireEvent.keyDown(screen.getByRole('tab', { name: /All/ }), { key: 'ArrowRight' });
    expect(onselect).toHaveBeenLastCalledWith('condition');
  });

  it('TrendChart describes its values and range', () => {
    render(TrendChart, {
      points: [
        { t: 1, v: 5 },
        { t: 2, v: 7 },
      ],
      label: 'HbA1c',
      unit: '%',
      low: 4,
      high: 6,
    });
    expect(screen.getByRole('img', { name: /HbA1c: 2 values, latest 7 %, reference range 4 to 6/ })).toBeInTheDocument();
  });
});

describe('helpers', () => {
  it('visibleRange', () => {
    expect(visibleRange(0, 720, 72, 5000)).toEqual({ start: 0, end: 18 });
    expect(visibleRange(7200, 720, 72, 5000)).toEqual({ start: 92, end: 118 });
    expect(visibleRange(0, 720, 72, 0)).toEqual({ start: 0, end: 0 });
    expect(visibleRange(1e9, 720, 72, 10).end).toBe(10);
  });

  it('scale puts the range band around the values', () => {
    const s = scale([{ t: 0, v: 0 }, { t: 10, v: 10 }], 100, 100, 0, 2, 8);
    expect(s.path).toBe('M0.0,100.0 L100.0,0.0');
    expect(s.band).toEqual({ y: 20, h: 60 });
  });
});

describe('DocumentViewer', () => {
  const file = (kind: DocumentAttachment['kind'], content_type: string | null): DocumentAttachment => ({
    id: null,
    content_type,
    title: 'Visit note',
    size: 10,
    kind,
    url: null,
  });
  const bytes = (s: string) => new TextEncoder().encode(s).buffer as ArrayBuffer;

  it('shows a text note as plain text, never as markup', async () => {
    render(DocumentViewer, {
      file: file('text', 'text/plain'),
      load: async () => bytes('Plan: <b>rest</b>\nand fluids'),
    });
    const pre = await screen.findByTestId('document-text');
    expect(pre.textContent).toBe('Plan: <b>rest</b>\nand fluids');
    expect(pre.querySelector('b')).toBeNull();
  });

  it('shows an image from a blob URL with its title as alt text, and frees the URL', async () => {
    const created = vi.fn(() => 'blob:carekey/1');
    const revoked = vi.fn();
    Object.assign(URL, { createObjectURL: created, revokeObjectURL: revoked });
    const { unmount } = render(DocumentViewer, {
      file: { ...file('image', 'image/png'), title: 'Rash photo' },
      load: async () => new Uint8Array([137, 80, 78, 71]).buffer,
    });
    const img = await screen.findByTestId('document-image');
    expect(img.getAttribute('src')).toBe('blob:carekey/1');
    expect(img.getAttribute('alt')).toBe('Rash photo');
    const blob = (created.mock.calls[0] as unknown[])[0] as Blob;
    expect(blob.type).toBe('image/png');
    unmount();
    expect(revoked).toHaveBeenCalledWith('blob:carekey/1');
  });

  it('draws a PDF through the renderer and lists its text for screen readers', async () => {
    const renderPdf = vi.fn(async (_d: ArrayBuffer, host: HTMLElement) => {
      const c = document.createElement('canvas');
      c.setAttribute('aria-label', 'Page 1 of 60');
      host.appendChild(c);
      return { pages: 60, drawn: 50, text: ['Clinic letter'] };
    });
    render(DocumentViewer, { file: file('pdf', 'application/pdf'), load: async () => bytes('%PDF-1.4'), renderPdf });
    expect(await screen.findByText('The first 50 of 60 pages are shown.')).toBeInTheDocument();
    expect(screen.getByLabelText('Page 1 of 60')).toBeInTheDocument();
    expect(screen.getByTestId('pdf-text').textContent).toBe('Clinic letter');
    expect(new TextDecoder().decode(renderPdf.mock.calls[0][0])).toBe('%PDF-1.4');
  });

  it('says a damaged PDF is damaged, and passes the app error through for the rest', async () => {
    render(DocumentViewer, {
      file: file('pdf', 'application/pdf'),
      load: async () => bytes('nope'),
      renderPdf: async () => {
        throw new Error('Invalid PDF structure');
      },
    });
    const banner = await screen.findByRole('alert');
    expect(banner.dataset.code).toBe('file_damaged');
    expect(banner.textContent).not.toContain('Invalid PDF structure');
  });

  it('shows the app refusal in words', async () => {
    render(DocumentViewer, {
      file: file('image', 'image/png'),
      load: async () => {
        throw { code: 'not_supported', message: 'This file is not on this device.' };
      },
    });
    expect((await screen.findByRole('alert')).textContent).toContain('This file is not on this device.');
  });

  it('does not load a file it cannot show', async () => {
    const load = vi.fn(async () => bytes(''));
    render(DocumentViewer, { file: file('other', 'application/zip'), load });
    expect(await screen.findByText(/cannot be shown here/)).toBeInTheDocument();
    expect(load).not.toHaveBeenCalled();
  });
});
