// The app's screens (the real route files under src/app, rendered by
// Expo Router's testing library) against a real Luna: sign up, a streamed
// reply, Stop, images to completion, and the errors people see for 401,
// 402, 409 and 429.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import { fireEvent, render, screen, waitFor } from '@testing-library/react-native';
import { ExpoRoot, router } from 'expo-router';
import { getMockContext } from 'expo-router/testing-library';
import path from 'node:path';
import { AppState } from 'react-native';

import { client, FaultyProxy, invite, lunaUrl, newUser, uniqueEmail } from './helpers';

const appDir = path.resolve(__dirname, '..', 'src', 'app');

// renderApp renders the app's real routes at a URL. (Expo Router's own
// renderRouter switches Jest to fake timers, which would stop the real
// network waits of these tests.)
function renderApp(initialUrl: string) {
  process.env.EXPO_ROUTER_IMPORT_MODE = 'sync';
  return render(<ExpoRoot context={getMockContext(appDir)} location={initialUrl} />);
}
const slow = { timeout: 30_000 };

let proxy: FaultyProxy;

beforeAll(async () => {
  proxy = await new FaultyProxy(lunaUrl()).start();
});
afterAll(async () => {
  await proxy.stop();
});
beforeEach(() => {
  // The app reaches Luna through the proxy, so a test can slow the network.
  process.env.EXPO_PUBLIC_LUNA_URL = proxy.url;
});

async function signUpThroughTheScreen(credits: number): Promise<string> {
  renderApp('/sign-up');
  const email = uniqueEmail('screen');
  fireEvent.changeText(await screen.findByLabelText('Email', {}, slow), email);
  fireEvent.changeText(screen.getByLabelText('Password (8 characters or more)'), 'a long password');
  fireEvent.changeText(screen.getByLabelText('Invite code'), invite(credits));
  fireEvent.press(screen.getByRole('button', { name: 'Create account' }));
  await screen.findByText('Pick a model. It stays with the conversation.', {}, slow);
  await screen.findByText('Luna Demo (placeholder text)', {}, slow);
  return email;
}

async function sendFromComposer(text: string) {
  const inputs = await screen.findAllByLabelText('Message', {}, slow);
  fireEvent.changeText(inputs[inputs.length - 1]!, text);
  const buttons = screen.getAllByTestId('send');
  fireEvent.press(buttons[buttons.length - 1]!);
}

// waitForReply waits until the chat screen shows a finished reply whose
// text matches.
async function waitForReply(text: RegExp) {
  await screen.findByText(text, {}, slow);
  await screen.findAllByText(/\d+ credits? · \d+ tokens/, {}, slow);
  await waitFor(() => expect(screen.queryAllByTestId('stop')).toHaveLength(0), slow);
}

describe('screens', () => {
  test('sign up with an invite code, see the balance and the model prices', async () => {
    await signUpThroughTheScreen(1000);
    await screen.findByText('1,000 credits', {}, slow);
    expect(screen.getByText('Luna Demo (placeholder text)')).toBeTruthy();
    expect(screen.getByText('10 credits / 1K tokens')).toBeTruthy();
  });

  test('a reply streams into the chat screen, then Stop ends the next one', async () => {
    await signUpThroughTheScreen(1000);
    await sendFromComposer('Hello from the screen test');
    // Streaming: text arrives while the Stop button is there.
    await screen.findByText(/You said: “Hello from the screen test”/, {}, slow);
    expect(screen.queryAllByTestId('stop').length).toBeGreaterThan(0);
    await waitForReply(/luna serve --models-file models\.toml/);
    await waitFor(() => expect(screen.queryByText('1,000 credits')).toBeNull(), slow); // the charge, live

    await sendFromComposer('Now stop me please');
    const stop = await screen.findByTestId('stop', {}, slow);
    await waitFor(() => expect(screen.getAllByTestId('assistant-text').length).toBeGreaterThan(1), slow);
    fireEvent.press(stop);
    await screen.findByText('Stopped.', {}, slow);
  });

  test('back from the background mid-reply, the finished text shows at once', async () => {
    await signUpThroughTheScreen(1000);
    await sendFromComposer('Background me');
    await screen.findByText(/You said: “Background me”/, {}, slow); // streaming
    // iOS suspends the app: its open connections go silent (not closed).
    proxy.hold(/^GET \/v1\/(events|messages\/[^/]+\/stream)[ ?]/);
    // The app's AppState listener (React Native's Jest AppState records it).
    const calls = (AppState.addEventListener as unknown as { mock: { calls: [string, (s: string) => void][] } }).mock.calls;
    const onChange = calls.filter(([type]) => type === 'change').at(-1)![1];
    onChange('background');
    await new Promise((r) => setTimeout(r, 5000)); // the reply finishes on the server meanwhile
    expect(screen.queryByText(/luna serve --models-file models\.toml/)).toBeNull();
    onChange('active');
    // Well before the 40 s idle timeout would notice the dead connection.
    await waitForReply(/luna serve --models-file models\.toml/);
    proxy.release();
  });

  test('401: a wrong password is explained', async () => {
    const { session } = await newUser(10);
    renderApp('/sign-in');
    fireEvent.changeText(await screen.findByLabelText('Email', {}, slow), session.user.email);
    fireEvent.changeText(screen.getByLabelText('Password'), 'not the password');
    fireEvent.press(screen.getByRole('button', { name: 'Sign in' }));
    await screen.findByText('Wrong email or password.', {}, slow);
    expect(screen.getByRole('alert')).toBeTruthy();
  });

  test('402: no credits for a reply is explained', async () => {
    await signUpThroughTheScreen(0);
    await sendFromComposer('Can I chat for free?');
    await screen.findByText(/^Not enough credits\./, {}, slow);
  });

  test('409: a reply started on another device is explained', async () => {
    const email = await signUpThroughTheScreen(1000);
    await sendFromComposer('First message');
    await waitForReply(/You said: “First message”/);
    // Another device signs in and sends in the same conversation while this
    // phone's event stream is held back by a slow network.
    const other = client();
    other.setToken((await other.login({ email, password: 'a long password' })).token);
    const conv = (await other.conversations()).items[0]!;
    proxy.holdEvents();
    try {
      const sent = await other.sendMessage(conv.id, 'From my laptop');
      await sendFromComposer('From my phone');
      await screen.findByText(/^A reply is still being written in this conversation\./, {}, slow);
      await other.cancelMessage(sent.assistantMessage.id);
    } finally {
      proxy.releaseEvents();
    }
  });

  test('429: too many replies at once is explained with when to retry', async () => {
    const email = await signUpThroughTheScreen(1000);
    const other = client();
    other.setToken((await other.login({ email, password: 'a long password' })).token);
    const model = (await other.models())[0]!.id;
    const running: string[] = [];
    for (let i = 0; i < 2; i++) {
      const c = await other.createConversation(model);
      running.push((await other.sendMessage(c.id, `busy ${i}`)).assistantMessage.id);
    }
    await sendFromComposer('One more');
    await screen.findByText(/^Too many requests\..*Try again in \d+ seconds?\./, {}, slow);
    for (const id of running) await other.cancelMessage(id);
  });

  test('per-message actions: regenerate and page versions, continue a stopped reply, edit, delete', async () => {
    const email = await signUpThroughTheScreen(1000);
    await sendFromComposer('Tell me about versions');
    await waitForReply(/You said: “Tell me about versions”/);

    // Regenerate: a second version of the reply; ‹ 1 / 2 › pages back.
    fireEvent.press(await screen.findByTestId('action-regenerate', {}, slow));
    await screen.findByText('2 / 2', {}, slow);
    await waitFor(() => expect(screen.queryAllByTestId('stop')).toHaveLength(0), slow);
    await screen.findByTestId('action-regenerate', {}, slow);
    fireEvent.press(screen.getByLabelText('Previous version'));
    await screen.findByText('1 / 2', {}, slow);
    fireEvent.press(screen.getByLabelText('Next version'));
    await screen.findByText('2 / 2', {}, slow);

    // Stop a reply, then Continue it: the same message grows.
    await sendFromComposer('Stop me, then continue');
    fireEvent.press(await screen.findByTestId('stop', {}, slow));
    await screen.findByText('Stopped.', {}, slow);
    fireEvent.press(await screen.findByTestId('action-continue', {}, slow));
    await screen.findByTestId('stop', {}, slow); // generating again…
    await screen.findByTestId('action-regenerate', {}, slow); // …and done
    expect(screen.queryByText('Stopped.')).toBeNull();

    // Edit the last question: a new exchange, the old one an earlier version.
    fireEvent.press(await screen.findByTestId('action-edit', {}, slow));
    fireEvent.changeText(screen.getByLabelText('Edited message'), 'An edited question');
    fireEvent.press(screen.getByTestId('save-edit'));
    await waitForReply(/You said: “An edited question”/);

    // Delete the conversation: back to a new chat; gone for other devices too.
    fireEvent.press(screen.getByTestId('delete-conversation'));
    fireEvent.press(await screen.findByTestId('confirm-delete', {}, slow));
    await screen.findByText('Pick a model. It stays with the conversation.', {}, slow);
    const other = client();
    other.setToken((await other.login({ email, password: 'a long password' })).token);
    expect((await other.conversations()).items).toHaveLength(0);
  });

  test('images: the price, live status, the gallery and the full-size view', async () => {
    await signUpThroughTheScreen(100);
    router.navigate('/images');
    const generate = await screen.findByRole('button', { name: 'Generate · 50 credits' }, slow);
    fireEvent.changeText(screen.getByLabelText('Image prompt'), 'a lighthouse at dusk');
    fireEvent.press(screen.getByTestId('size-512'));
    fireEvent.press(generate);
    await screen.findByLabelText(/^(Queued…|Generating…): a lighthouse at dusk$/, {}, slow);
    const done = await screen.findByTestId('image-completed', {}, { timeout: 60_000 });
    await screen.findByText('50 credits', {}, slow); // 100 − 50, live
    fireEvent.press(done);
    await screen.findByTestId('full-image', {}, slow);
    expect(screen.getByText('512×512 · 50 credits')).toBeTruthy();
  });
});
