// Settings and restore against a mocked IPC: what is sent, and what the screen says back.
import { render, screen, fireEvent, waitFor } from '@testing-library/svelte';
import { mockIPC, clearMocks } from '@tauri-apps/api/mocks';
import { afterEach, describe, expect, it } from 'vitest';
import { get } from 'svelte/store';
import Settings from '../src/screens/Settings.svelte';
import Onboarding from '../src/screens/Onboarding.svelte';
import { screen as current, status } from '../src/stores';

afterEach(() => clearMocks());

const settings = { version: 1, name: 'Pat', licence: null, relay_url: 'http://127.0.0.1:9', auto_lock_secs: 300, last_backup_at: null, enrolled_relays: [] as string[] };
const appStatus = { vault_exists: true, unlocked: true, default_relay_url: '', categories: [], settings };

describe('Settings', () => {
  it('backs up, says when, and reports an unreachable relay in words', async () => {
    const calls: string[] = [];
    mockIPC((cmd) => {
      calls.push(cmd);
      if (cmd === 'app_status') return appStatus;
      if (cmd === 'backup_now') return { version: 3, at: 1_764_590_000 };
      if (cmd === 'check_relay') return { relay_url: 'x', reachable: false, message: 'the relay cannot be reached' };
      if (cmd === 'trusted_clinics') return [];
      return null;
    });
    render(Settings);
    await waitFor(() => expect(screen.getByTestId('last-backup')).toHaveTextContent('No backup on the relay yet.'));
    await fireEvent.click(screen.getByTestId('backup-now'));
    await waitFor(() => expect(screen.getByTestId('last-backup')).toHaveTextContent('Last backup:'));
    expect(screen.getByTestId('settings-status')).toHaveTextContent('Backed up to the relay at');
    await fireEvent.click(screen.getByRole('button', { name: 'Check' }));
    await waitFor(() => expect(screen.getByTestId('relay-check')).toHaveTextContent('Not usable: the relay cannot be reached'));
    expect(calls.filter((c) => c !== 'trusted_clinics')).toEqual(['app_status', 'backup_now', 'check_relay']);
  });

  it('changes the passphrase only when the two new ones match', async () => {
    const sent: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'app_status') return appStatus;
      if (cmd === 'change_passphrase') sent.push((args as { args: unknown }).args);
      if (cmd === 'trusted_clinics') return [];
      return null;
    });
    render(Settings);
    await fireEvent.input(screen.getByLabelText('Current passphrase'), { target: { value: 'old passphrase here' } });
    await fireEvent.input(screen.getByLabelText(/^New passphrase \(/), { target: { value: 'Tr0ub4dor & horse battery' } });
    await fireEvent.input(screen.getByLabelText('New passphrase again'), { target: { value: 'different' } });
    const button = screen.getByRole('button', { name: 'Change passphrase' });
    expect(button).toBeDisabled();
    await fireEvent.input(screen.getByLabelText('New passphrase again'), { target: { value: 'Tr0ub4dor & horse battery' } });
    await fireEvent.click(button);
    await waitFor(() => expect(screen.getByTestId('settings-status')).toHaveTextContent('Passphrase changed'));
    expect(sent).toEqual([{ old: 'old passphrase here', new: 'Tr0ub4dor & horse battery' }]);
  });
});

describe('Enrollment key', () => {
  it('saves a key for the relay in use, never shows it, and removes it', async () => {
    const sent: unknown[] = [];
    let current = { ...settings };
    mockIPC((cmd, args) => {
      if (cmd === 'app_status') return { ...appStatus, settings: current };
      if (cmd === 'trusted_clinics') return [];
      if (cmd === 'set_enrollment_key') {
        const a = (args as { args: { relay_url: string; key: string | null } }).args;
        sent.push(a);
        current = { ...current, enrolled_relays: a.key ? [a.relay_url] : [] };
        return current;
      }
      return null;
    });
    render(Settings);
    await waitFor(() => expect(screen.getByTestId('enrollment-state')).toHaveTextContent('No key for this relay'));
    const save = screen.getByRole('button', { name: 'Save key' });
    expect(save).toBeDisabled();
    const input = screen.getByLabelText(/^Enrollment key/);
    expect(input).toHaveAttribute('type', 'password');
    await fireEvent.input(input, { target: { value: '  clinic-key-1  ' } });
    await fireEvent.click(save);
    await waitFor(() => expect(screen.getByTestId('enrollment-state')).toHaveTextContent('This device holds a key'));
    expect(screen.getByTestId('settings-status')).toHaveTextContent('sent only to this relay');
    expect((input as HTMLInputElement).value).toBe('');
    expect(document.body.textContent).not.toContain('clinic-key-1');
    await fireEvent.click(screen.getByRole('button', { name: 'Remove key' }));
    await waitFor(() => expect(screen.getByTestId('enrollment-state')).toHaveTextContent('No key for this relay'));
    expect(sent).toEqual([
      { relay_url: 'http://127.0.0.1:9', key: 'clinic-key-1' },
      { relay_url: 'http://127.0.0.1:9', key: null },
    ]);
  });
});

describe('Trusted clinics', () => {
  it('adds a clinic key, shows a refused one in words, and removes it', async () => {
    let list: { name: string; key: string; added_at: number }[] = [];
    const sent: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'app_status') return appStatus;
      if (cmd === 'trusted_clinics') return list;
      if (cmd === 'trust_clinic') {
        const a = (args as { args: { text: string } }).args;
        sent.push(a);
        if (!a.text.startsWith('CAREKEY-CLINIC:')) throw { code: 'invalid_input', message: 'clinic key: not a Carekey clinic key' };
        list = [{ name: "St. Mary's Clinic", key: 'ab'.repeat(32), added_at: 1_764_590_000 }];
        return list;
      }
      if (cmd === 'untrust_clinic') {
        sent.push((args as { args: unknown }).args);
        list = [];
        return list;
      }
      return null;
    });
    render(Settings);
    const box = await screen.findByTestId('trusted-clinics');
    expect(box).toHaveTextContent('No clinic keys yet');
    const input = screen.getByLabelText(/Clinic key/);
    await fireEvent.input(input, { target: { value: 'hello' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Trust this clinic' }));
    await waitFor(() => expect(screen.getByTestId('clinic-error')).toHaveTextContent('not a Carekey clinic key'));
    await fireEvent.input(input, { target: { value: 'CAREKEY-CLINIC:AAAA' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Trust this clinic' }));
    await waitFor(() => expect(screen.getByTestId('trusted-clinic')).toHaveTextContent("St. Mary's Clinic"));
    expect(screen.queryByTestId('clinic-error')).toBeNull();
    await fireEvent.click(screen.getByRole('button', { name: "Stop trusting St. Mary's Clinic" }));
    await waitFor(() => expect(screen.queryByTestId('trusted-clinic')).toBeNull());
    expect(sent).toEqual([{ text: 'hello' }, { text: 'CAREKEY-CLINIC:AAAA' }, { key: 'ab'.repeat(32) }]);
  });
});

describe('Restore', () => {
  it('sends the 24 words and opens the records; a wrong phrase says so and stays', async () => {
    const words = Array.from({ length: 24 }, (_, i) => `word${i}`).join(' ');
    let fail = true;
    const sent: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'restore_vault') {
        sent.push((args as { args: unknown }).args);
        if (fail) throw { code: 'not_found', message: 'no backup was found for these words on this relay' };
        return appStatus;
      }
      return null;
    });
    status.set({ ...appStatus, vault_exists: false, unlocked: false, default_relay_url: 'http://127.0.0.1:9', settings: null });
    current.set('onboarding');
    render(Onboarding);
    await fireEvent.click(screen.getByRole('button', { name: 'Restore from my 24 words' }));
    await fireEvent.input(screen.getByLabelText('Your 24 words'), { target: { value: ` ${words.toUpperCase()} ` } });
    await fireEvent.input(screen.getByLabelText('Your name (shown to doctors)'), { target: { value: 'Pat' } });
    await fireEvent.input(screen.getByLabelText(/A passphrase for this device/), { target: { value: 'Tr0ub4dor & horse battery' } });
    await fireEvent.input(screen.getByLabelText('Passphrase again'), { target: { value: 'Tr0ub4dor & horse battery' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Restore' }));
    await waitFor(() => expect(screen.getByRole('alert')).toHaveTextContent('no backup was found'));
    expect(get(current)).toBe('onboarding');
    fail = false;
    await fireEvent.click(screen.getByRole('button', { name: 'Restore' }));
    await waitFor(() => expect(get(current)).toBe('main'));
    expect(sent[1]).toEqual({ phrase: words, new_passphrase: 'Tr0ub4dor & horse battery', name: 'Pat', relay_url: 'http://127.0.0.1:9' });
  });
});
