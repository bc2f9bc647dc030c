// Server-Sent Events over fetch with streaming bodies (expo/fetch on iOS,
// the browser's fetch on the web): EventSource cannot send the bearer
// token. eventsource-parser does the SSE framing; LiveStream keeps a stream
// open across dropped connections, network changes and backgrounding,
// resuming with Last-Event-ID so that no byte is missed or repeated.
import { createParser, type EventSourceMessage } from 'eventsource-parser';

import { errorFromResponse, networkError, ApiError } from './errors';

// StreamFetch is fetch with a streaming response body.
export type StreamFetch = (url: string, init: { headers: Record<string, string>; signal: AbortSignal }) => Promise<Response>;

export type StreamState = 'connecting' | 'open' | 'retrying' | 'closed';

export interface LiveStreamOptions {
  url: string;
  fetch: StreamFetch;
  getToken: () => Promise<string | null>;
  onEvent: (ev: EventSourceMessage) => void;
  onOpen?: (reconnect: boolean) => void;
  onState?: (state: StreamState) => void;
  onFatal?: (err: ApiError) => void;
  // resume sends the last event id on reconnection (message streams);
  // the events stream has no ids and reloads instead (onOpen).
  resume?: boolean;
  // idleTimeoutMs: reconnect when nothing (not even a heartbeat, every
  // 15 s) arrived for this long.
  idleTimeoutMs?: number;
}

// backoff returns the wait before reconnect attempt n (1, 2, …): quick at
// first, doubling up to 8 s, with jitter.
export function backoff(n: number): number {
  const base = Math.min(8000, 250 * 2 ** Math.max(0, n - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

const open = new Set<LiveStream>();

// reconnectAll makes every open stream reconnect at once (keeping its last
// event id): the app calls it when it returns to the foreground and when
// the network changes, as the old connection may be dead without knowing.
export function reconnectAll(): void {
  for (const s of open) s.reconnect();
}

// openStreamCount is the number of live streams (for tests and debugging).
export function openStreamCount(): number {
  return open.size;
}

export class LiveStream {
  private readonly opts: Required<Omit<LiveStreamOptions, 'onOpen' | 'onState' | 'onFatal'>> &
    Pick<LiveStreamOptions, 'onOpen' | 'onState' | 'onFatal'>;
  lastEventId = '';
  private closed = false;
  private controller: AbortController | null = null;
  private wake: (() => void) | null = null;
  private attempt = 0;
  private skipWait = false;
  private connections = 0;
  // Bumped by reconnect(): events of an abandoned connection are ignored.
  private generation = 0;

  constructor(opts: LiveStreamOptions) {
    this.opts = { resume: true, idleTimeoutMs: 40_000, ...opts };
  }

  start(): this {
    open.add(this);
    void this.run();
    return this;
  }

  // close stops the stream for good.
  close(): void {
    if (this.closed) return;
    this.closed = true;
    open.delete(this);
    this.controller?.abort();
    this.wake?.();
    this.opts.onState?.('closed');
  }

  // reconnect drops the current connection and connects again at once,
  // resuming from the last event id.
  reconnect(): void {
    if (this.closed) return;
    this.generation++;
    this.attempt = 0;
    this.skipWait = true;
    this.controller?.abort();
    this.wake?.();
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      const controller = new AbortController();
      this.controller = controller;
      const generation = this.generation;
      this.skipWait = false;
      this.opts.onState?.(this.attempt === 0 ? 'connecting' : 'retrying');
      let idle: ReturnType<typeof setTimeout> | undefined;
      const armIdle = () => {
        clearTimeout(idle);
        idle = setTimeout(() => controller.abort(), this.opts.idleTimeoutMs);
      };
      try {
        const token = await this.opts.getToken();
        const headers: Record<string, string> = { Accept: 'text/event-stream' };
        if (token) headers.Authorization = 'Bearer ' + token;
        if (this.opts.resume && this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
        armIdle();
        let res: Response;
        try {
          res = await this.opts.fetch(this.opts.url, { headers, signal: controller.signal });
        } catch (err) {
          throw controller.signal.aborted ? err : networkError();
        }
        if (!res.ok) {
          const err = await errorFromResponse(res);
          if (res.status >= 400 && res.status < 500 && res.status !== 429 && res.status !== 408) {
            // Retrying cannot fix these (signed out, not found, …).
            clearTimeout(idle);
            this.close();
            this.opts.onFatal?.(err);
            return;
          }
          throw err;
        }
        if (!res.body) throw new ApiError(0, 'bad_response', 'The server sent no event stream.');
        this.connections++;
        this.opts.onState?.('open');
        this.opts.onOpen?.(this.connections > 1);
        const parser = createParser({
          onEvent: (ev) => {
            if (this.closed || generation !== this.generation) return;
            this.attempt = 0;
            if (ev.id !== undefined && ev.id !== '') this.lastEventId = ev.id;
            this.opts.onEvent(ev);
          },
        });
        const reader = res.body.getReader();
        const decoder = new TextDecoder('utf-8');
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done || this.closed || generation !== this.generation) break;
            armIdle();
            // stream: a character split between two chunks is decoded once whole.
            parser.feed(decoder.decode(value, { stream: true }));
          }
        } finally {
          reader.cancel().catch(() => {});
        }
      } catch {
        // A dropped connection, an idle timeout, a 5xx or a 429: retry below.
      } finally {
        clearTimeout(idle);
      }
      if (this.closed) return;
      if (this.skipWait) continue;
      this.attempt++;
      this.opts.onState?.('retrying');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoff(this.attempt));
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }
}
