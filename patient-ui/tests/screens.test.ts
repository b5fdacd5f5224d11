// Screens against a mocked IPC: what each shows for the shell's answers and errors.
import { render, screen, fireEvent, waitFor } from '@testing-library/svelte';
import { mockIPC, clearMocks } from '@tauri-apps/api/mocks';
import { afterEach, describe, expect, it } from 'vitest';
import { get } from 'svelte/store';
import Unlock from '../src/screens/Unlock.svelte';
import Records from '../src/screens/Records.svelte';
import Share from '../src/screens/Share.svelte';
import Access from '../src/screens/Access.svelte';
import Inbox from '../src/screens/Inbox.svelte';
import { applyEvent, inboxCount, screen as current, status } from '../src/stores';
import type { TimelineRow } from '@carekey/ui';

afterEach(() => clearMocks());

const row = (i: number, category: string): TimelineRow => ({
  id: i.toString(16).padStart(64, '0'), fhir_type: 'Condition', category, title: `Record ${i}`,
  date: '2024-01-01', status: null, detail: null, author: null,
  provenance: 'imported_unsigned', provenance_label: 'imported, unsigned', attachments: 0,
});

describe('Unlock', () => {
  it('shows the wrong-passphrase error and stays on the unlock screen', async () => {
    current.set('unlock');
    const calls: unknown[] = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      if (cmd === 'unlock') throw { code: 'wrong_passphrase', message: 'wrong passphrase' };
      return null;
    });
    render(Unlock);
    await fireEvent.input(screen.getByLabelText('Passphrase'), { target: { value: 'nope nope nope' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Unlock' }));
    await waitFor(() => expect(screen.getByRole('alert')).toHaveTextContent('wrong passphrase'));
    expect(get(current)).toBe('unlock');
    expect(calls).toEqual([['unlock', { args: { passphrase: 'nope nope nope' } }]]);
  });

  it('goes to the records on success', async () => {
    current.set('unlock');
    mockIPC(() => null);
    render(Unlock);
    await fireEvent.input(screen.getByLabelText('Passphrase'), { target: { value: 'correct horse' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Unlock' }));
    await waitFor(() => expect(get(current)).toBe('main'));
  });
});

describe('Records', () => {
  it('lists the timeline with category counts and searches', async () => {
    status.set({
      vault_exists: true, unlocked: true, default_relay_url: '', settings: null,
      categories: [
        { category: 'condition', label: 'Problems' },
        { category: 'vitals', label: 'Vital signs' },
      ],
    });
    const rows = [row(1, 'condition'), row(2, 'condition'), row(3, 'vitals')];
    mockIPC((cmd, args) => {
      if (cmd === 'timeline') return rows;
      if (cmd === 'search') return (args as { args: { query: string } }).args.query ? [rows[2]] : rows;
      return null;
    });
    render(Records);
    await waitFor(() => expect(screen.getByRole('tab', { name: /Problems/ })).toHaveAttribute('data-count', '2'));
    expect(screen.getByRole('tab', { name: /All/ })).toHaveAttribute('data-count', '3');
    await fireEvent.input(screen.getByLabelText('Search records'), { target: { value: 'pulse' } });
    await waitFor(() => expect(screen.getByTestId('timeline')).toHaveAttribute('data-count', '1'));
  });

  it('opens a record file in the viewer from the record detail', async () => {
    status.set({ vault_exists: true, unlocked: true, default_relay_url: '', categories: [], settings: null });
    const doc = { ...row(7, 'document'), fhir_type: 'DocumentReference', title: 'Visit note' };
    const asked: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'timeline') return [doc];
      if (cmd === 'get_record')
        return {
          summary: {
            id: doc.id, fhir_type: 'DocumentReference', fhir_id: 'd-note', category: 'document', title: 'Visit note',
            date: '2025-10-01', key_values: [], codes: [], author: null, origin: { kind: 'imported', source: 'x.json' },
            signature: { status: 'unsigned' }, attachments: [],
          },
          resource: {},
        };
      if (cmd === 'record_files')
        return [
          { id: null, content_type: 'text/plain', title: null, size: 22, kind: 'text', url: null },
          { id: null, content_type: 'image/png', title: 'Scan', size: null, kind: 'image', url: 'https://hospital.example/s.png' },
        ];
      if (cmd === 'open_attachment') {
        asked.push((args as { args: unknown }).args);
        return new TextEncoder().encode('Plan: rest and fluids.').buffer;
      }
      return null;
    });
    render(Records);
    await fireEvent.click(await screen.findByText('Visit note'));
    await waitFor(() => expect(screen.getByTestId('record-detail')).toBeInTheDocument());
    expect(screen.getByRole('dialog')).toHaveTextContent('kept elsewhere, not on this phone');
    await fireEvent.click(screen.getByRole('button', { name: 'Open Visit note (text)' }));
    await waitFor(() => expect(screen.getByTestId('document-text')).toHaveTextContent('Plan: rest and fluids.'));
    expect(asked).toEqual([{ record_id: doc.id, index: 0 }]);
  });

  it('draws the trend charts with the lab reference range', async () => {
    status.set({ vault_exists: true, unlocked: true, default_relay_url: '', categories: [], settings: null });
    const point = (t: number, value: number) => ({ t, date: '2024-01-01', value, id: 'ab'.repeat(32) });
    mockIPC((cmd) => {
      if (cmd === 'timeline') return [];
      if (cmd === 'trends')
        return {
          vitals: [],
          labs: [{
            key: '4548-4', kind: null, title: 'HbA1c', unit: '%',
            lines: [{ name: 'HbA1c', code: '4548-4', unit: '%', points: [point(1, 7.9), point(2, 7.0)], range: { low: 4, high: 5.7, unit: '%', text: null } }],
          }],
        };
      return null;
    });
    render(Records);
    await fireEvent.click(screen.getByTestId('toggle-trends'));
    await waitFor(() => expect(screen.getByRole('img', { name: /HbA1c: 2 values, latest 7 %, reference range 4 to 5.7 %/ })).toBeInTheDocument());
    expect(screen.getByText('No vital signs in your records yet.')).toBeInTheDocument();
  });

  it('shows a malformed import as an error and keeps the timeline', async () => {
    status.set({ vault_exists: true, unlocked: true, default_relay_url: '', categories: [], settings: null });
    mockIPC((cmd) => {
      if (cmd === 'timeline') return [row(1, 'condition')];
      if (cmd === 'import_file') throw { code: 'invalid_input', message: 'file: not a FHIR Bundle or NDJSON' };
      return null;
    });
    render(Records);
    await fireEvent.click(screen.getByRole('button', { name: 'Import' }));
    await fireEvent.input(screen.getByLabelText(/FHIR file/), { target: { value: '/tmp/bad.json' } });
    await fireEvent.click(screen.getAllByRole('button', { name: 'Import' })[1]);
    await waitFor(() => expect(screen.getByRole('alert')).toHaveTextContent('not a FHIR'));
    expect(screen.getByTestId('timeline')).toHaveAttribute('data-count', '1');
  });
});

describe('Share', () => {
  it('QR → doctor at the door → confirm → done; an expired QR shows its error', async () => {
    const answered: unknown[] = [];
    let waits = 0;
    mockIPC((cmd, args) => {
      if (cmd === 'start_share')
        return {
          share: 'aa'.repeat(16), pairing: 'bb'.repeat(16), qr_svg: '<svg xmlns="http://www.w3.org/2000/svg"/>',
          qr_text: 'CAREKEY:XYZ', qr_expires_at: Date.now() / 1000 + 300, expires_at: Date.now() / 1000 + 86400,
          records: 42, attachments: 0, categories: ['conditions'],
        };
      if (cmd === 'wait_for_doctor') {
        waits += 1;
        if (waits === 1) throw { code: 'no_answer', message: 'nobody scanned yet' };
        return { pairing: 'bb'.repeat(16), name: 'Dr. Ada Quinn', licence: null, check_code: '123-4567', attested: false, trust: 'the device that scanned your QR (self-asserted card)' };
      }
      if (cmd === 'answer_doctor') {
        answered.push(args);
        return 'cc'.repeat(16);
      }
      return null;
    });
    render(Share);
    await fireEvent.click(screen.getByRole('button', { name: 'Show QR code' }));
    await waitFor(() => expect(screen.getByTestId('check-code')).toHaveTextContent('123-4567'));
    expect(screen.getByTestId('door-trust')).toHaveTextContent('self-asserted');
    expect(waits).toBe(2);
    await fireEvent.click(screen.getByTestId('confirm-doctor'));
    await waitFor(() => expect(screen.getByTestId('share-done')).toHaveTextContent('Dr. Ada Quinn can see 42 records'));
    expect(answered).toEqual([{ args: { id: 'bb'.repeat(16), accept: true } }]);
  });

  it('single records are found, chosen and sent with the categories; a bad number of days is refused', async () => {
    const sent: unknown[] = [];
    const searched: string[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'search') {
        const q = (args as { args: { query: string } }).args.query;
        searched.push(q);
        return q === 'asthma' ? [row(1, 'conditions'), row(2, 'conditions')] : [];
      }
      if (cmd === 'start_share') {
        sent.push(args);
        return { share: 'aa'.repeat(16), pairing: 'bb'.repeat(16), qr_svg: '<svg/>', qr_text: 'x', qr_expires_at: Date.now() / 1000 + 300, expires_at: 2, records: 1, attachments: 0, categories: ['conditions'] };
      }
      if (cmd === 'wait_for_doctor') throw { code: 'no_answer', message: 'nobody scanned yet' };
      return null;
    });
    render(Share);
    // Nothing chosen: the QR cannot be made, and the screen says why.
    for (const c of ['conditions', 'medications', 'allergies', 'immunizations'])
      await fireEvent.click(document.querySelector(`[data-share-category=${c}]`)!);
    expect(screen.getByRole('button', { name: 'Show QR code' })).toBeDisabled();
    expect(screen.getByTestId('share-nothing')).toBeInTheDocument();

    await fireEvent.input(screen.getByLabelText('Find a record'), { target: { value: 'asthma' } });
    await waitFor(() => expect(screen.getByRole('list', { name: 'Matching records' })).toBeInTheDocument());
    expect(searched).toEqual(['asthma']);
    await fireEvent.click(document.querySelector(`[data-pick-record="${row(2, 'x').id}"]`)!);
    await fireEvent.click(document.querySelector(`[data-pick-record="${row(1, 'x').id}"]`)!);
    expect(screen.getByTestId('picked-count')).toHaveTextContent('2 single records chosen');
    await fireEvent.click(screen.getByRole('button', { name: 'Remove Record 2' }));
    expect(screen.getByTestId('picked-count')).toHaveTextContent('1 single record chosen');

    await fireEvent.input(screen.getByLabelText('Or a number of days'), { target: { value: 'soon' } });
    expect(screen.getByTestId('days-error')).toHaveTextContent('Type a number of days');
    expect(screen.getByRole('button', { name: 'Show QR code' })).toBeDisabled();
    await fireEvent.input(screen.getByLabelText('Or a number of days'), { target: { value: '400' } });
    expect(screen.getByTestId('days-error')).toHaveTextContent('At most 366 days');
    await fireEvent.input(screen.getByLabelText('Or a number of days'), { target: { value: '2' } });
    expect(screen.queryByTestId('days-error')).toBeNull();

    await fireEvent.click(screen.getByRole('button', { name: 'Show QR code' }));
    await waitFor(() => expect(sent).toHaveLength(1));
    expect(sent[0]).toEqual({ args: { categories: [], records: [row(1, 'x').id], expires_in_secs: 2 * 86_400, policy: 'ask', depth: 0 } });
  });

  it('the confirm step narrows the grant to the ticked kinds; none ticked disables Confirm', async () => {
    const answered: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'start_share')
        return {
          share: 'aa'.repeat(16), pairing: 'bb'.repeat(16), qr_svg: '<svg xmlns="http://www.w3.org/2000/svg"/>',
          qr_text: 'CAREKEY:XYZ', qr_expires_at: Date.now() / 1000 + 300, expires_at: Date.now() / 1000 + 86400,
          records: 42, attachments: 0, categories: ['conditions', 'medications', 'allergies'],
        };
      if (cmd === 'wait_for_doctor')
        return { pairing: 'bb'.repeat(16), name: 'Dr. Ada Quinn', licence: null, check_code: '123-4567', attested: false, trust: 't' };
      if (cmd === 'answer_doctor') {
        answered.push(args);
        return 'cc'.repeat(16);
      }
      return null;
    });
    render(Share);
    await fireEvent.click(screen.getByRole('button', { name: 'Show QR code' }));
    await waitFor(() => expect(screen.getByTestId('confirm-scope')).toBeInTheDocument());
    const scope = screen.getByRole('group', { name: 'What Dr. Ada Quinn will see' });
    expect(scope).toHaveAccessibleDescription('This doctor will see only what is ticked.');
    // The share's categories only, each a labelled checkbox, all ticked at first.
    const boxes = screen.getAllByRole('checkbox');
    expect(boxes).toHaveLength(3);
    for (const name of ['Problems', 'Medications', 'Allergies']) {
      expect(screen.getByRole('checkbox', { name })).toBeChecked();
    }
    const confirm = screen.getByTestId('confirm-doctor');
    for (const b of boxes) await fireEvent.click(b);
    expect(confirm).toBeDisabled();
    expect(confirm).toHaveAccessibleDescription('Tick at least one kind of record to confirm, or reject.');
    await fireEvent.click(screen.getByRole('checkbox', { name: 'Allergies' }));
    await fireEvent.click(screen.getByRole('checkbox', { name: 'Problems' }));
    expect(confirm).toBeEnabled();
    expect(screen.queryByTestId('confirm-reason')).toBeNull();
    await fireEvent.click(confirm);
    await waitFor(() => expect(screen.getByTestId('share-done')).toHaveTextContent('Dr. Ada Quinn can see only your problems, allergies'));
    // In the share's order, whatever order they were ticked in.
    expect(answered).toEqual([{ args: { id: 'bb'.repeat(16), accept: true, categories: ['conditions', 'allergies'] } }]);
  });

  it('an expired QR shows a clear message', async () => {
    mockIPC((cmd) => {
      if (cmd === 'start_share')
        return { share: 'aa'.repeat(16), pairing: 'bb'.repeat(16), qr_svg: '<svg/>', qr_text: 'x', qr_expires_at: 1, expires_at: 2, records: 1, attachments: 0, categories: [] };
      if (cmd === 'wait_for_doctor') throw { code: 'expired', message: 'this QR code has expired' };
      return null;
    });
    render(Share);
    await fireEvent.click(screen.getByRole('button', { name: 'Show QR code' }));
    await waitFor(() => expect(screen.getByRole('alert')).toHaveTextContent('expired'));
    expect(screen.getByTestId('qr-countdown')).toHaveTextContent('This QR code has expired');
  });

  it('a rejected check code shares nothing', async () => {
    mockIPC((cmd) => {
      if (cmd === 'start_share')
        return { share: 'aa'.repeat(16), pairing: 'bb'.repeat(16), qr_svg: '<svg/>', qr_text: 'x', qr_expires_at: Date.now() / 1000 + 300, expires_at: 2, records: 1, attachments: 0, categories: [] };
      if (cmd === 'wait_for_doctor')
        return { pairing: 'bb'.repeat(16), name: 'Dr. Who', licence: null, check_code: '000-0000', attested: false, trust: 't' };
      return null;
    });
    render(Share);
    await fireEvent.click(screen.getByRole('button', { name: 'Show QR code' }));
    await waitFor(() => screen.getByTestId('check-code'));
    await fireEvent.click(screen.getByRole('button', { name: 'Reject' }));
    await waitFor(() => expect(screen.getByTestId('share-done')).toHaveTextContent('Nothing was shared'));
  });
});

describe('Access and Inbox', () => {
  it('revoke explains honestly and shows the new status', async () => {
    const share = {
      id: 'aa'.repeat(16), created_at: 1, expires_at: 2, policy: 'ask', depth: 0, categories: ['conditions'],
      records: 5, attachments: 0,
      grantees: [{ relationship: 'cc'.repeat(16), name: 'Dr. Ada Quinn', trust: 't', status: 'active', expires_at: 2, scope: { kind: 'everything' } }],
    };
    mockIPC((cmd) => {
      if (cmd === 'shares') return [share];
      if (cmd === 'revoke') return [{ ...share, grantees: [{ ...share.grantees[0], status: 'revoked' }] }];
      if (cmd === 'access_log') return { lines: [{ who: 'Dr. Ada Quinn', records: 12 }], downloads: ['Dr. Noor Hale downloaded the link at 2026-12-01 10:32 UTC'], alerts: ['The relay logged a fetch by Dr. Ada Quinn a second time (first logged as entry 3); it is counted once.'] };
      if (cmd === 'forward_requests') return [];
      return null;
    });
    render(Access);
    await fireEvent.click(await screen.findByRole('button', { name: 'Show access log' }));
    await waitFor(() => expect(screen.getByTestId('access-log')).toHaveTextContent('Dr. Ada Quinn fetched 12 records'));
    expect(screen.getByTestId('access-alert')).toHaveTextContent('Warning: The relay logged a fetch by Dr. Ada Quinn a second time');
    expect(screen.getByTestId('access-log')).toHaveTextContent('Dr. Noor Hale downloaded the link at 2026-12-01 10:32 UTC');
    await fireEvent.click(screen.getByTestId('revoke'));
    expect(screen.getByRole('dialog')).toHaveTextContent('They keep what they already fetched; new versions are under a new key they do not have.');
    await fireEvent.click(screen.getByTestId('revoke-confirm'));
    await waitFor(() => expect(screen.getByText(/revoked/)).toBeInTheDocument());
  });

  it("says what each grantee's grant covers, in words a screen reader ties to them", async () => {
    const g = (name: string, rel: string, scope: object) => ({ relationship: rel.repeat(16), name, trust: 't', status: 'active', expires_at: 4102444800, scope });
    const share = {
      id: 'aa'.repeat(16), created_at: 1, expires_at: 4102444800, policy: 'ask', depth: 0,
      categories: ['conditions', 'medications', 'allergies'], records: 9, attachments: 0,
      grantees: [
        g('Dr. Ada Quinn', 'b1', { kind: 'everything' }),
        g('Dr. Bo Lind', 'b2', { kind: 'only', categories: ['medications', 'conditions'], records: 0 }),
        g('Dr. Cy Park', 'b3', { kind: 'only', categories: [], records: 2 }),
        g('Dr. Di Roe', 'b4', { kind: 'not_recorded' }),
      ],
    };
    mockIPC((cmd) => {
      if (cmd === 'shares') return [share];
      if (cmd === 'forward_requests') return [];
      if (cmd === 'delegations') return [];
      return null;
    });
    render(Access);
    await screen.findAllByTestId('grantee-scope');
    const said = screen.getAllByTestId('grantee-scope').map((p) => p.textContent);
    expect(said).toEqual([
      'What Dr. Ada Quinn can read: Sees everything in this share.',
      'What Dr. Bo Lind can read: Sees only: Problems, Medications.',
      'What Dr. Cy Park can read: Sees only: 2 records picked one by one.',
      'What Dr. Di Roe can read: What they can see was not recorded on this phone (shared before it kept that); revoke and share again to be sure.',
    ]);
    // The name is only for screen readers; the screen shows it on the line above.
    expect(screen.getByText('What Dr. Bo Lind can read:')).toHaveClass('ck-visually-hidden');
  });

  it('access lists a forward request and approves it', async () => {
    let requests = [{ id: 'ee'.repeat(16), from: 'Dr. Ada Quinn', colleague: 'Dr. Bo Lind', colleague_trust: 'self-asserted card', share: 'aa'.repeat(16), reason: 'Cardiology opinion', categories: ['allergies', 'conditions'], records: 0 }];
    const answers: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'shares') return [];
      if (cmd === 'forward_requests') return requests;
      if (cmd === 'answer_forward') {
        answers.push((args as { args: unknown }).args);
        requests = [];
        return requests;
      }
      return null;
    });
    render(Access);
    const req = await screen.findByTestId('forward-request');
    expect(req).toHaveTextContent('Dr. Ada Quinn asks to forward your shared records to Dr. Bo Lind');
    expect(req).toHaveTextContent('Reason: Cardiology opinion');
    expect(req).toHaveTextContent('They would see: problems, allergies.');
    expect(req).toHaveTextContent('they keep what they fetch');
    await fireEvent.click(screen.getByTestId('approve-forward'));
    await waitFor(() => expect(screen.queryByTestId('forward-request')).toBeNull());
    expect(answers).toEqual([{ id: 'ee'.repeat(16), accept: true }]);
  });

  it('access lists the colleagues under their doctor, revokes one, and alerts on an unknown one', async () => {
    const share = 'aa'.repeat(16);
    const rel = 'bb'.repeat(16);
    const grantee = { relationship: rel, name: 'Dr. Ada Quinn', trust: 'the device you paired with', status: 'active', expires_at: 4102444800, scope: { kind: 'everything' } };
    const shares = [
      { id: share, created_at: 1, expires_at: 4102444800, policy: 'allowed', depth: 1, categories: ['allergies'], records: 2, attachments: 0, grantees: [grantee] },
      { id: 'cc'.repeat(16), created_at: 1, expires_at: 4102444800, policy: 'allowed', depth: 1, categories: ['allergies'], records: 1, attachments: 0, grantees: [{ ...grantee, relationship: 'dd'.repeat(16) }] },
    ];
    let tree = [{ id: 'ee'.repeat(16), by: 'Dr. Ada Quinn', colleague: 'Dr. Bo Lind', root: rel, level: 1, expires_at: 4102444800, status: 'active' }];
    const revoked: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'shares') return shares;
      if (cmd === 'forward_requests') return [];
      if (cmd === 'delegations') {
        if ((args as { args: { id: string } }).args.id !== share) throw { code: 'tampered', message: 'a delegation notice does not verify' };
        return tree;
      }
      if (cmd === 'revoke_delegation') {
        revoked.push((args as { args: unknown }).args);
        tree = [{ ...tree[0], status: 'revoked' }];
        return tree;
      }
      return null;
    });
    render(Access);
    const list = await screen.findByTestId('colleagues');
    expect(list).toHaveTextContent('Dr. Ada Quinn passed it on to Dr. Bo Lind — active');
    expect(await screen.findByTestId('delegation-alert')).toHaveTextContent('cannot account for');
    await fireEvent.click(screen.getByTestId('revoke-colleague'));
    await fireEvent.click(await screen.findByTestId('revoke-colleague-confirm'));
    await waitFor(() => expect(screen.getByTestId('colleagues')).toHaveTextContent('Dr. Bo Lind — revoked'));
    expect(revoked).toEqual([{ share, delegation: 'ee'.repeat(16) }]);
    expect(screen.queryByTestId('revoke-colleague')).toBeNull();
  });

  it('publishes a share as a SMART Health Link with the passcode and the honest warning, then deletes it', async () => {
    const share = { id: 'aa'.repeat(16), created_at: 1, expires_at: 4102444800, policy: 'never', depth: 0, categories: ['allergies'], records: 2, attachments: 0, grantees: [] };
    let links: unknown[] = [];
    const sent: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'shares') return [share];
      if (cmd === 'forward_requests') return [];
      if (cmd === 'links') return links;
      if (cmd === 'publish_link') {
        sent.push((args as { args: unknown }).args);
        links = [{ id: 'ff'.repeat(32), label: null, expires_at: 4102444800, status: 'active', files: 2 }];
        return { id: 'ff'.repeat(32), qr_svg: '<svg xmlns="http://www.w3.org/2000/svg"/>', shlink: 'shlink:/abc', passcode: '48151623', expires_at: 4102444800, files: 2, attachments: 1, left_out: 1, left_out_note: '1 attached file was left out: 1 is larger than the 2.4 MB one file of a link holds.', warning: 'Anyone with this code and passcode can read these records until 2100-01-01. We cannot tell who opened it. Deleting it stops new downloads, not copies.' };
      }
      if (cmd === 'delete_link') {
        sent.push((args as { args: unknown }).args);
        links = [];
        return null;
      }
      return null;
    });
    render(Access);
    await fireEvent.click(await screen.findByTestId('share-link'));
    await fireEvent.click(screen.getByRole('button', { name: 'Publish the link' }));
    expect(await screen.findByTestId('link-passcode')).toHaveTextContent('48151623');
    expect(screen.getByTestId('link-warning')).toHaveTextContent('We cannot tell who opened it');
    expect(screen.getByTestId('link-left-out')).toHaveTextContent('1 attached file was left out');
    expect(screen.getByTestId('qr')).toBeInTheDocument();
    await fireEvent.click(screen.getByRole('button', { name: 'Done' }));
    expect(await screen.findByTestId('link-row')).toHaveTextContent('2 records');
    await fireEvent.click(screen.getByRole('button', { name: /Delete the link/ }));
    await waitFor(() => expect(screen.queryByTestId('link-row')).toBeNull());
    expect(sent).toEqual([
      { share: 'aa'.repeat(16), passcode: true, expires_in_secs: 86_400, label: null },
      { id: 'ff'.repeat(32) },
    ]);
  });

  it('inbox shows the signature status and accepts', async () => {
    let notes = [{ id: 'dd'.repeat(16), author: 'Dr. Ada Quinn', signature: 'signature valid, from the device you paired with on 2026-12-01', resource_type: 'Observation', title: 'Blood pressure checked', received_at: 1, resource: {} }];
    mockIPC((cmd) => {
      if (cmd === 'check_inbox') return notes;
      if (cmd === 'answer_note') {
        notes = [];
        return notes;
      }
      return null;
    });
    render(Inbox);
    expect(await screen.findByTestId('note-signature')).toHaveTextContent('signature valid');
    await fireEvent.click(screen.getByTestId('accept-note'));
    await waitFor(() => expect(screen.queryByTestId('note')).toBeNull());
    expect(get(inboxCount)).toBe(0);
  });

  it('events: locked goes to the unlock screen, inbox_changed counts', () => {
    current.set('main');
    applyEvent({ event: 'locked' });
    expect(get(current)).toBe('unlock');
    applyEvent({ event: 'inbox_changed', notes: 2, forward_requests: 0 });
    expect(get(inboxCount)).toBe(2);
  });
});
