// Screens against a mocked IPC: what each shows for the shell's answers and errors.
import { render, screen, fireEvent, waitFor } from '@testing-library/svelte';
import { mockIPC, clearMocks } from '@tauri-apps/api/mocks';
import { afterEach, describe, expect, it } from 'vitest';
import { get } from 'svelte/store';
import Scan from '../src/screens/Scan.svelte';
import Patients from '../src/screens/Patients.svelte';
import Chart from '../src/screens/Chart.svelte';
import { applyEvent, openPatient, tab } from '../src/stores';
import type { ChartView, PatientLinkView } from '../src/ipc';

afterEach(() => clearMocks());

const hex = 'ab'.repeat(16);
const link: PatientLinkView = {
  id: hex, name: 'Pat Example', trust: 'the device you paired with on 1 Dec 2026', share: hex,
  expires_at: Math.floor(Date.now() / 1000) + 3 * 86_400 + 60, status: 'active', records: 2,
  fetched_at: Math.floor(Date.now() / 1000),
};
const chart: ChartView = {
  patient: link,
  rows: [],
  summary: {
    problems: [{ id: hex, title: 'Asthma', clinical_status: 'active', verification_status: null, severity: null, onset: '2019-04-02', sort_key: 1 }],
    medications: [], allergies: [], vitals: [],
  },
  labs: [], vitals: [], lab_trends: [], documents: [], categories: [],
};

describe('Scan', () => {
  it('says in words that the patient declined', async () => {
    mockIPC((cmd) => {
      if (cmd === 'scan_text') return { scan: hex, check_code: '123-4567' };
      if (cmd === 'wait_for_grant') throw { code: 'declined', message: 'declined' };
      return null;
    });
    render(Scan);
    await fireEvent.input(screen.getByLabelText("Or paste the code's text"), { target: { value: 'CAREKEY:ABC' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Use this code' }));
    await waitFor(() => expect(screen.getByRole('alert')).toHaveTextContent('The patient declined on their phone'));
  });

  it('shows the check code, waits through no_answer, fetches, then opens the chart', async () => {
    let waits = 0;
    const calls: string[] = [];
    let release: (v: string) => void = () => {};
    mockIPC((cmd) => {
      calls.push(cmd);
      if (cmd === 'scan_text') return { scan: hex, check_code: '765-4321' };
      if (cmd === 'wait_for_grant') {
        waits += 1;
        if (waits === 1) throw { code: 'no_answer', message: 'no answer yet' };
        return new Promise<string>((r) => (release = r));
      }
      if (cmd === 'refresh_patient') return link;
      return null;
    });
    tab.set('scan');
    openPatient.set(null);
    render(Scan);
    await fireEvent.input(screen.getByLabelText("Or paste the code's text"), { target: { value: 'CAREKEY:ABC' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Use this code' }));
    await waitFor(() => expect(screen.getByTestId('check-code')).toHaveTextContent('765-4321'));
    await waitFor(() => expect(waits).toBe(2));
    release(hex);
    await waitFor(() => expect(get(openPatient)).toBe(hex));
    expect(get(tab)).toBe('patients');
    expect(calls).toEqual(['scan_text', 'wait_for_grant', 'wait_for_grant', 'refresh_patient']);
  });
});

describe('Scan: SMART Health Links', () => {
  it('asks for the passcode, shows the attempts left on a wrong one, then opens the chart', async () => {
    const sent: unknown[] = [];
    const smart = { ...link, id: 'cd'.repeat(16), trust: 'unsigned (SMART Health Link)', share: `smart:${'cd'.repeat(16)}` };
    mockIPC((cmd, args) => {
      if (cmd === 'scan_text') throw { code: 'unexpected', message: 'a SMART link must not go to scan_text' };
      if (cmd === 'open_smart_link') {
        const a = (args as { args: { text: string; passcode: string | null } }).args;
        sent.push(a);
        if (a.passcode === null) throw { code: 'passcode_required', message: 'this SMART Health Link is protected by a passcode' };
        if (a.passcode !== '1234') throw { code: 'passcode_rejected', message: 'the passcode was not accepted (2 attempts left)' };
        return { patient: smart, skipped: [] };
      }
      return null;
    });
    tab.set('scan');
    openPatient.set(null);
    render(Scan);
    await fireEvent.input(screen.getByLabelText("Or paste the code's text"), { target: { value: 'shlink:/eyJ1cmwiOiJ4In0' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Use this code' }));
    const input = await screen.findByLabelText('Passcode for this SMART Health Link');
    await fireEvent.input(input, { target: { value: '9999' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Open the link' }));
    await waitFor(() => expect(screen.getByRole('alert')).toHaveTextContent('2 attempts left'));
    await fireEvent.input(screen.getByLabelText('Passcode for this SMART Health Link'), { target: { value: '1234' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Open the link' }));
    await waitFor(() => expect(get(openPatient)).toBe(smart.id));
    expect(sent).toEqual([
      { text: 'shlink:/eyJ1cmwiOiJ4In0', passcode: null },
      { text: 'shlink:/eyJ1cmwiOiJ4In0', passcode: '9999' },
      { text: 'shlink:/eyJ1cmwiOiJ4In0', passcode: '1234' },
    ]);
  });

  it('opens a scanned SMART code the shell kept (scan_text answers smart_link)', async () => {
    const smart = { ...link, id: 'ef'.repeat(16), trust: 'unsigned (SMART Health Link)' };
    mockIPC((cmd, args) => {
      if (cmd === 'scan_text') throw { code: 'smart_link', message: 'this code is a SMART Health Link' };
      if (cmd === 'open_smart_link') {
        expect((args as { args: unknown }).args).toEqual({ text: '', passcode: null });
        return { patient: smart, skipped: [] };
      }
      return null;
    });
    openPatient.set(null);
    render(Scan);
    await fireEvent.input(screen.getByLabelText("Or paste the code's text"), { target: { value: 'CAREKEY:ABC' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Use this code' }));
    await waitFor(() => expect(get(openPatient)).toBe(smart.id));
  });
});

describe('Patients', () => {
  it('shows a SMART Health Link import as an unsigned copy, without a time left', async () => {
    const smart = { ...link, id: 'cd'.repeat(16), name: 'Jane Anyperson', trust: 'unsigned (SMART Health Link)', share: `smart:${'cd'.repeat(16)}`, expires_at: 2 ** 64 };
    mockIPC((cmd) => (cmd === 'patients' ? [smart] : null));
    render(Patients);
    await waitFor(() => expect(screen.getAllByTestId('patient-row')).toHaveLength(1));
    expect(screen.getByText('unsigned (SMART Health Link)')).toBeInTheDocument();
    expect(screen.getByText(/an imported copy/)).toBeInTheDocument();
    expect(screen.queryByText(/days left/)).toBeNull();
  });

  it('lists each patient with status and time left', async () => {
    mockIPC((cmd) => (cmd === 'patients' ? [link, { ...link, id: 'cd'.repeat(16), name: 'Old Patient', status: 'ended' }] : null));
    render(Patients);
    await waitFor(() => expect(screen.getAllByTestId('patient-row')).toHaveLength(2));
    expect(screen.getByText('Pat Example')).toBeInTheDocument();
    expect(screen.getByText(/3 days left/)).toBeInTheDocument();
    expect(screen.getByText(/access ended by the patient/)).toBeInTheDocument();
  });
});

describe('Chart', () => {
  it('shows the summary, and the banner when access ends', async () => {
    mockIPC((cmd) => (cmd === 'chart' ? chart : null));
    render(Chart, { props: { id: hex } });
    await waitFor(() => expect(screen.getByTestId('chart-name')).toHaveTextContent('Pat Example'));
    expect(screen.getByText('Asthma')).toBeInTheDocument();
    applyEvent({ event: 'access_ended', patient: hex, purged: 2 });
    await waitFor(() => expect(screen.getByTestId('access-ended')).toHaveTextContent('2 records were removed from this device'));
    expect(screen.queryByTestId('chart-name')).toBeNull();
  });

  it('sends a blood pressure as numbers and lists it as sent', async () => {
    const sent: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'chart') return chart;
      if (cmd === 'write_back') {
        sent.push((args as { args: unknown }).args);
        return { id: hex, patient: hex, patient_name: 'Pat Example', resource_type: 'Observation', title: 'Blood pressure 128/82 mmHg', sent_at: 1, delivery: 'on the relay' };
      }
      if (cmd === 'sent_notes') return sent.length ? [{ id: hex, patient: hex, patient_name: 'Pat Example', resource_type: 'Observation', title: 'Blood pressure 128/82 mmHg', sent_at: 1, delivery: 'on the relay' }] : [];
      return null;
    });
    render(Chart, { props: { id: 'ef'.repeat(16) } });
    await waitFor(() => screen.getByTestId('chart-name'));
    await fireEvent.click(screen.getByRole('button', { name: 'Write back' }));
    await fireEvent.change(screen.getByLabelText('What to send'), { target: { value: 'blood_pressure' } });
    await fireEvent.input(screen.getByLabelText('Systolic (mmHg)'), { target: { value: '128' } });
    await fireEvent.input(screen.getByLabelText('Diastolic (mmHg)'), { target: { value: '82' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Sign and send' }));
    await waitFor(() => expect(screen.getByTestId('sent-ok')).toHaveTextContent('Blood pressure 128/82 mmHg'));
    expect(sent).toEqual([{ kind: 'blood_pressure', patient: 'ef'.repeat(16), systolic: 128, diastolic: 82, date: expect.stringMatching(/^\d{4}-\d\d-\d\d$/) }]);
  });
  it('offers no write-back for a SMART Health Link import, and says why', async () => {
    const smart = { ...link, id: 'cd'.repeat(16), trust: 'unsigned (SMART Health Link)', share: `smart:${'cd'.repeat(16)}`, expires_at: 2 ** 64 };
    const asked: string[] = [];
    mockIPC((cmd) => {
      asked.push(cmd);
      if (cmd === 'chart') return { ...chart, patient: smart };
      if (cmd === 'sent_notes') return [];
      return null;
    });
    render(Chart, { props: { id: smart.id } });
    await waitFor(() => screen.getByTestId('chart-name'));
    await fireEvent.click(screen.getByRole('button', { name: 'Write back' }));
    expect(await screen.findByTestId('no-write-back')).toHaveTextContent(
      "this patient's records came from a SMART Health Link; there is no way to send back",
    );
    expect(screen.queryByTestId('write-form')).toBeNull();
    expect(screen.queryByRole('button', { name: 'Sign and send' })).toBeNull();
    expect(asked).not.toContain('write_back');
  });

  it('opens a shared document file in the viewer', async () => {
    const asked: unknown[] = [];
    const doc = {
      id: 'cd'.repeat(32), fhir_type: 'DocumentReference', title: 'Visit note', date: '2025-10-01', sort_key: 1,
      author: 'Dr. Liane Kunze', status: 'current', kind: 'pdf' as const,
      attachments: [
        { id: 'aa'.repeat(16), content_type: 'application/pdf', title: 'Letter.pdf', size: 900, kind: 'pdf' as const, url: null },
        { id: null, content_type: 'text/plain', title: null, size: 20, kind: 'text' as const, url: null },
      ],
    };
    mockIPC((cmd, args) => {
      if (cmd === 'chart') return { ...chart, documents: [doc] };
      if (cmd === 'open_attachment') {
        asked.push((args as { args: unknown }).args);
        return new TextEncoder().encode('Plan: rest and fluids.').buffer;
      }
      return null;
    });
    render(Chart, { props: { id: '34'.repeat(16) } });
    await waitFor(() => screen.getByTestId('chart-name'));
    await fireEvent.click(screen.getByRole('button', { name: 'Documents' }));
    expect(screen.getByTestId('document-row')).toHaveTextContent('2 file(s)');
    await fireEvent.click(screen.getByRole('button', { name: 'Open Visit note (text)' }));
    await waitFor(() => expect(screen.getByTestId('document-text')).toHaveTextContent('Plan: rest and fluids.'));
    expect(asked).toEqual([{ record_id: 'cd'.repeat(32), index: 1 }]);
    expect(screen.getByRole('dialog')).toHaveTextContent('Dr. Liane Kunze');
  });

  it('forwards only the kinds ticked', async () => {
    const sent: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'chart') return { ...chart, categories: ['conditions', 'allergies'] };
      if (cmd === 'read_invite') return { name: 'Dr. Bo Lind', licence: null, trust: 'self-asserted card', code: 'ABCD-EFGH-JKLM-NPQR' };
      if (cmd === 'forward') {
        sent.push((args as { args: unknown }).args);
        return { status: 'forwarded' };
      }
      return null;
    });
    render(Chart, { props: { id: '12'.repeat(16) } });
    await waitFor(() => screen.getByTestId('chart-name'));
    await fireEvent.click(screen.getByRole('button', { name: 'Forward' }));
    await fireEvent.input(screen.getByLabelText(/invite/), { target: { value: 'CAREKEY-INVITE:AAAA' } });
    await fireEvent.input(screen.getByLabelText(/Reason/), { target: { value: 'Allergy work-up' } });
    const kinds = screen.getByTestId('forward-kinds');
    expect(kinds).toHaveTextContent('Problems');
    expect(kinds).toHaveTextContent('Allergies');
    expect(kinds).not.toHaveTextContent('Medications');
    await fireEvent.click(screen.getByLabelText('Allergies'));
    await fireEvent.click(screen.getByRole('button', { name: 'Check the colleague' }));
    await fireEvent.click(await screen.findByTestId('forward-confirm'));
    await waitFor(() => expect(screen.getByTestId('forward-result')).toHaveTextContent('Forwarded to Dr. Bo Lind'));
    expect(sent).toEqual([{ patient: '12'.repeat(16), invite: 'CAREKEY-INVITE:AAAA', reason: 'Allergy work-up', categories: ['allergies'] }]);
  });
});

describe('Profile: closed relays', () => {
  it('saves an enrollment key for one relay, lists the relay but never the key, and removes it', async () => {
    const { default: Profile } = await import('../src/screens/Profile.svelte');
    const sent: unknown[] = [];
    let enrolled: string[] = [];
    const profile = () => ({
      name: 'Dr. Ada Quinn', role: 'doctor', licence: null, fingerprint: 'abcd', appears_as: 'a',
      card_text: 'CAREKEY-CARD:x', relay_url: 'https://relay.example.org', enrolled_relays: enrolled,
    });
    mockIPC((cmd, args) => {
      if (cmd === 'profile') return profile();
      if (cmd === 'trusted_clinics') return [];
      if (cmd === 'set_enrollment_key') {
        const a = (args as { args: { relay_url: string; key: string | null } }).args;
        sent.push(a);
        if (a.relay_url === 'ftp://x') throw { code: 'invalid_input', message: 'relay URL: must start with https://' };
        enrolled = a.key ? [a.relay_url] : [];
        return profile();
      }
      return null;
    });
    render(Profile);
    const list = await screen.findByTestId('enrolled-relays');
    expect(list).toHaveTextContent('No enrollment keys');
    const save = screen.getByRole('button', { name: 'Save key' });
    expect(save).toBeDisabled();
    await fireEvent.input(screen.getByLabelText('Relay address'), { target: { value: 'ftp://x' } });
    await fireEvent.input(screen.getByLabelText('Enrollment key'), { target: { value: 'clinic-key-1' } });
    await fireEvent.click(save);
    await waitFor(() => expect(screen.getByRole('alert')).toHaveTextContent('must start with https://'));
    await fireEvent.input(screen.getByLabelText('Relay address'), { target: { value: 'https://clinic.example.org' } });
    await fireEvent.input(screen.getByLabelText('Enrollment key'), { target: { value: 'clinic-key-1' } });
    await fireEvent.click(save);
    await waitFor(() => expect(screen.getByTestId('enrolled-relays')).toHaveTextContent('https://clinic.example.org'));
    expect(screen.getByTestId('enrollment-ok')).toHaveTextContent('sent only to that relay');
    expect(document.body.textContent).not.toContain('clinic-key-1');
    await fireEvent.click(screen.getByRole('button', { name: 'Remove the key for https://clinic.example.org' }));
    await waitFor(() => expect(screen.getByTestId('enrolled-relays')).toHaveTextContent('No enrollment keys'));
    expect(sent).toEqual([
      { relay_url: 'ftp://x', key: 'clinic-key-1' },
      { relay_url: 'https://clinic.example.org', key: 'clinic-key-1' },
      { relay_url: 'https://clinic.example.org', key: null },
    ]);
  });
});
