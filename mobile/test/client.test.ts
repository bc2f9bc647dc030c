// The typed client and its SSE streams against a real Luna (demo mode).
import { describe, expect, test } from '@jest/globals';
import { ApiError, describeError } from '../src/api/errors';
import { reconnectAll } from '../src/api/sse';
import type { ImageJob, StreamEnd, UserEvent } from '../src/api/types';
import { absoluteUrl } from '../src/api/config';
import { client, FaultyProxy, invite, lunaUrl, newUser, uniqueEmail, waitFor } from './helpers';

async function demoModel(api: ReturnType<typeof client>): Promise<string> {
  const models = await api.models();
  const demo = models.find((m) => m.demo) ?? models[0];
  if (!demo) throw new Error('no models');
  return demo.id;
}

async function expectApiError(p: Promise<unknown>, status: number, code: string): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    expect({ status: e.status, code: e.code }).toEqual({ status, code });
    return e;
  }
  throw new Error(`expected ${status} ${code}, got success`);
}

describe('accounts', () => {
  test('sign up needs the invite code, which brings its credits; log in; sign out', async () => {
    const api = client();
    const config = await api.authConfig();
    expect(config).toMatchObject({ mode: 'local', signupMode: 'invite' });
    const email = uniqueEmail('signup');
    const e = await expectApiError(api.signup({ email, password: 'a long password' }), 403, 'invite_required');
    expect(describeError(e)).toMatch(/invite code/i);

    const session = await api.signup({ email, password: 'a long password', inviteCode: invite(700) });
    api.setToken(session.token);
    const me = await api.me();
    expect(me.email).toBe(email);
    expect(me.credits.available).toBe(700);

    const again = client();
    const login = await again.login({ email, password: 'a long password' });
    again.setToken(login.token);
    await again.logout();
    await expectApiError(again.me(), 401, 'unauthorized');
  });
});

describe('chat streaming', () => {
  test('a reply streams to the end and matches the stored message', async () => {
    const { api } = await newUser();
    const conv = await api.createConversation(await demoModel(api));
    const sent = await api.sendMessage(conv.id, 'Hello from the stream test');
    let text = '';
    const end = await new Promise<StreamEnd>((resolve, reject) => {
      api.streamMessage(sent.assistantMessage.id, { onText: (t) => (text = t), onEnd: resolve, onFatal: reject });
    });
    expect(end.status).toBe('complete');
    const stored = await api.message(sent.assistantMessage.id);
    expect(text).toBe(stored.content);
    expect(text).toContain('Hello from the stream test');
  });

  test('a dropped connection resumes with Last-Event-ID: no byte missing or doubled', async () => {
    const proxy = await new FaultyProxy(lunaUrl()).start();
    try {
      const { session } = await newUser();
      const api = client(proxy.url, session.token);
      const conv = await api.createConversation(await demoModel(api));
      const sent = await api.sendMessage(conv.id, 'Résumé with ünïcödé — and emoji 🚀 please');
      const texts: string[] = [];
      let ended: StreamEnd | null = null;
      api.streamMessage(sent.assistantMessage.id, { onText: (t) => texts.push(t), onEnd: (e) => (ended = e) });
      await waitFor('some text', () => texts.length >= 5 && !ended);
      const before = texts[texts.length - 1]!;
      proxy.cut(); // the network goes away mid-reply
      await waitFor('the end', () => ended);
      expect(ended!.status).toBe('complete');
      const stored = await api.message(sent.assistantMessage.id);
      const final = texts[texts.length - 1]!;
      expect(final).toBe(stored.content);
      // Every text seen is a prefix of the next: nothing was replaced or repeated.
      for (let i = 1; i < texts.length; i++) expect(texts[i]!.startsWith(texts[i - 1]!)).toBe(true);
      expect(final.length).toBeGreaterThan(before.length);
      // The second connection asked for exactly what was missing.
      const streams = proxy.heads.filter((h) => h.includes('/stream'));
      expect(streams.length).toBeGreaterThanOrEqual(2);
      const resumed = streams[1]!.match(/^last-event-id: *(\d+)$/im);
      expect(resumed).not.toBeNull();
      expect(Number(resumed![1])).toBe(Buffer.byteLength(before, 'utf8'));
    } finally {
      await proxy.stop();
    }
  });

  test('returning to the foreground reconnects at once and resumes from the last offset', async () => {
    const proxy = await new FaultyProxy(lunaUrl()).start();
    try {
      const { session } = await newUser();
      const api = client(proxy.url, session.token);
      const conv = await api.createConversation(await demoModel(api));
      const sent = await api.sendMessage(conv.id, 'Background me');
      const texts: string[] = [];
      let ended: StreamEnd | null = null;
      api.streamMessage(sent.assistantMessage.id, { onText: (t) => texts.push(t), onEnd: (e) => (ended = e) });
      await waitFor('some text', () => texts.length >= 3 && !ended);
      reconnectAll(); // what the app does on AppState "active" and on network changes
      await waitFor('the end', () => ended);
      const stored = await api.message(sent.assistantMessage.id);
      expect(texts[texts.length - 1]).toBe(stored.content);
      for (let i = 1; i < texts.length; i++) expect(texts[i]!.startsWith(texts[i - 1]!)).toBe(true);
      const streams = proxy.heads.filter((h) => h.includes('/stream'));
      expect(streams.length).toBeGreaterThanOrEqual(2);
      expect(streams[1]).toMatch(/^last-event-id: *\d+$/im);
    } finally {
      await proxy.stop();
    }
  });

  test('Stop cancels the reply and keeps what arrived', async () => {
    const { api } = await newUser();
    const conv = await api.createConversation(await demoModel(api));
    const sent = await api.sendMessage(conv.id, 'Please stop me');
    let text = '';
    let ended: StreamEnd | null = null;
    api.streamMessage(sent.assistantMessage.id, { onText: (t) => (text = t), onEnd: (e) => (ended = e) });
    await waitFor('some text', () => text.length > 0);
    await api.cancelMessage(sent.assistantMessage.id);
    await waitFor('the end', () => ended);
    expect(ended!.status).toBe('cancelled');
    const stored = await api.message(sent.assistantMessage.id);
    expect(stored.status).toBe('cancelled');
    expect(text).toBe(stored.content);
  });
});

describe('errors', () => {
  test('401: a bad token', async () => {
    const api = client(lunaUrl(), 'not-a-token');
    const e = await expectApiError(api.me(), 401, 'unauthorized');
    expect(describeError(e)).toMatch(/sign in again/i);
  });

  test('402: no credits for a reply', async () => {
    const { api } = await newUser(0);
    const conv = await api.createConversation(await demoModel(api));
    const e = await expectApiError(api.sendMessage(conv.id, 'hi'), 402, 'insufficient_credits');
    expect(describeError(e)).toMatch(/not enough credits/i);
    await expectApiError(api.createImage('a cat', 512), 402, 'insufficient_credits');
  });

  test('409: a second send while a reply is generating', async () => {
    const { api } = await newUser();
    const conv = await api.createConversation(await demoModel(api));
    const sent = await api.sendMessage(conv.id, 'one');
    const e = await expectApiError(api.sendMessage(conv.id, 'two'), 409, 'generation_in_progress');
    expect(describeError(e)).toMatch(/still being written/i);
    await api.cancelMessage(sent.assistantMessage.id);
  });

  test('429: too many replies at once, with Retry-After', async () => {
    const { api } = await newUser();
    const model = await demoModel(api);
    const running: string[] = [];
    for (let i = 0; i < 2; i++) {
      const conv = await api.createConversation(model);
      running.push((await api.sendMessage(conv.id, `reply ${i}`)).assistantMessage.id);
    }
    const third = await api.createConversation(model);
    const e = await expectApiError(api.sendMessage(third.id, 'one too many'), 429, 'rate_limited');
    expect(e.retryAfter).toBeGreaterThan(0);
    expect(describeError(e)).toMatch(/try again in \d+ seconds?/i);
    for (const id of running) await api.cancelMessage(id);
  });
});

describe('images', () => {
  test('an image is generated to completion, live on /v1/events, and its URL serves it', async () => {
    const { api } = await newUser(200);
    const seen: UserEvent[] = [];
    const events = api.events({ onEvent: (ev) => seen.push(ev) });
    try {
      await waitFor('the first balance', () => seen.find((e) => e.event === 'credits.updated'));
      const job = await api.createImage('a lighthouse at dusk', 512);
      expect(job.status).toBe('pending');
      const done = await waitFor('the completed image', () => {
        const ev = seen.find((e) => e.event === 'image.updated' && e.data.id === job.id && e.data.status === 'completed');
        return ev && ev.event === 'image.updated' ? (ev.data as ImageJob) : undefined;
      }, 60_000);
      expect(done.image).not.toBeNull();
      const res = await fetch(absoluteUrl(lunaUrl(), done.image!.url));
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^image\//);
      const gallery = await api.images();
      expect(gallery.items.map((j) => j.id)).toContain(job.id);
      await waitFor('the charge', async () => (await api.me()).credits.balance === 150);
    } finally {
      events.close();
    }
  });
});
