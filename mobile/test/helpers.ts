// Helpers shared by the tests: users made through the real API, a
// fault-injecting TCP proxy in front of Luna, and waiting.
import net from 'node:net';

import { createLunaClient, type LunaClient } from '../src/api/client';
import type { Session } from '../src/api/types';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { invite } = require('./luna-process') as { invite: (credits: number) => string };

export const lunaUrl = (): string => {
  const url = process.env.LUNA_TEST_URL;
  if (!url) throw new Error('LUNA_TEST_URL is not set: Jest global setup did not start Luna');
  return url;
};

export { invite };

let seq = 0;
export const uniqueEmail = (tag: string): string => `${tag}-${Date.now()}-${++seq}@example.com`;

// client makes a client of baseUrl with a token kept in memory.
export function client(baseUrl = lunaUrl(), token: string | null = null): LunaClient & { setToken(t: string | null): void } {
  let current = token;
  const c = createLunaClient({ baseUrl, getToken: async () => current });
  return Object.assign(c, { setToken: (t: string | null) => void (current = t) });
}

// newUser signs up a user whose invite gives `credits` credits.
export async function newUser(credits = 1000, baseUrl = lunaUrl()): Promise<{ api: ReturnType<typeof client>; session: Session }> {
  const api = client(baseUrl);
  const session = await api.signup({ email: uniqueEmail('user'), password: 'a long password', inviteCode: invite(credits) });
  api.setToken(session.token);
  return { api, session };
}

export async function waitFor<T>(what: string, check: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// FaultyProxy forwards TCP to Luna and can cut every open connection, as a
// lost network does. It records each request's head, to see the headers
// the client sent (Last-Event-ID).
export class FaultyProxy {
  private server: net.Server;
  private sockets = new Set<net.Socket>();
  // The latest request line on each upstream connection (keep-alive
  // reuses them), to pick the ones to hold back.
  private lastRequest = new Map<net.Socket, string>();
  private held = new Set<net.Socket>();
  readonly heads: string[] = [];
  url = '';

  constructor(private target: string) {
    const { hostname, port } = new URL(target);
    this.server = net.createServer((client) => {
      const upstream = net.connect(Number(port), hostname);
      this.sockets.add(client).add(upstream);
      // Request heads on this connection (keep-alive reuses it), skipping bodies.
      let buf = '';
      let skip = 0;
      client.on('data', (chunk: Buffer) => {
        buf += chunk.toString('latin1');
        for (;;) {
          if (skip > 0) {
            const n = Math.min(skip, buf.length);
            buf = buf.slice(n);
            skip -= n;
            if (skip > 0) return;
          }
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.slice(0, end);
          buf = buf.slice(end + 4);
          this.heads.push(head);
          this.lastRequest.set(upstream, head.split('\r\n')[0] ?? '');
          skip = Number(/^content-length: *(\d+)$/im.exec(head)?.[1] ?? 0);
        }
      });
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const addr = this.server.address() as net.AddressInfo;
    this.url = `http://127.0.0.1:${addr.port}`;
    return this;
  }

  // hold stops passing on what the server sends on the open connections
  // whose latest request line matches (as a slow network, or a suspended
  // app, would); release lets it through again. New connections flow.
  hold(requestLine: RegExp): void {
    for (const [s, line] of this.lastRequest) {
      if (requestLine.test(line) && !s.destroyed) {
        s.pause();
        this.held.add(s);
      }
    }
  }

  holdEvents(): void {
    this.hold(/^GET \/v1\/events[ ?]/);
  }

  release(): void {
    for (const s of this.held) s.resume();
    this.held.clear();
  }

  releaseEvents(): void {
    this.release();
  }

  // cut drops every open connection at once.
  cut(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
