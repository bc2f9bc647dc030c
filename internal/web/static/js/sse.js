// Server-Sent Events over fetch(): EventSource cannot send an Authorization
// header, so the page reads the event stream itself. SSEParser follows the
// HTML standard's parsing rules (any line ending, comments, multi-line data,
// last event id); LiveStream keeps a stream open across network drops,
// resuming with Last-Event-ID.

import { errorFromResponse, networkError } from './api.js';

// SSEParser turns bytes into events. It decodes UTF-8 in stream mode, so a
// character split between two network chunks is decoded once whole.
export class SSEParser {
  // onEvent({type, data, id}) gets each event; onComment() each comment
  // line (heartbeats).
  constructor(onEvent, onComment = () => {}) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.decoder = new TextDecoder('utf-8');
    this.buf = '';
    this.data = [];
    this.type = '';
    this.lastId = '';
    this.bom = true;
  }

  // push feeds a chunk of bytes (Uint8Array).
  push(bytes) {
    this.buf += this.decoder.decode(bytes, { stream: true });
    this.lines(false);
  }

  // end flushes the decoder; an event without its blank line is dropped,
  // as the standard says.
  end() {
    this.buf += this.decoder.decode();
    this.lines(true);
  }

  lines(final) {
    let buf = this.buf;
    if (this.bom && buf.length > 0) {
      if (buf.charCodeAt(0) === 0xfeff) buf = buf.slice(1);
      this.bom = false;
    }
    let start = 0;
    for (;;) {
      let end = -1;
      for (let i = start; i < buf.length; i++) {
        const c = buf.charCodeAt(i);
        if (c === 10 || c === 13) { end = i; break; }
      }
      if (end < 0) break;
      let next = end + 1;
      if (buf.charCodeAt(end) === 13) {
        if (next === buf.length && !final) break; // "\r" now, perhaps "\n" in the next chunk
        if (buf.charCodeAt(next) === 10) next++;
      }
      this.line(buf.slice(start, end));
      start = next;
    }
    this.buf = buf.slice(start);
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58) { // ':'
      this.onComment(line.slice(1));
      return;
    }
    const colon = line.indexOf(':');
    let field = line, value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    switch (field) {
      case 'event': this.type = value; break;
      case 'data': this.data.push(value); break;
      case 'id': if (!value.includes('\0')) this.lastId = value; break;
      default: break; // retry and unknown fields: the page has its own backoff
    }
  }

  dispatch() {
    if (this.data.length === 0) {
      this.type = '';
      return;
    }
    const ev = { type: this.type || 'message', data: this.data.join('\n'), id: this.lastId };
    this.data = [];
    this.type = '';
    this.onEvent(ev);
  }
}

// backoff returns the wait before reconnect attempt n (1, 2, …): quick at
// first, then doubling up to 8 s, with jitter so that many clients do not
// come back at the same instant.
export function backoff(n) {
  const base = Math.min(8000, 250 * 2 ** Math.max(0, n - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

const streams = new Set();

// When the browser says the network is back, reconnect at once instead of
// waiting out the backoff.
window.addEventListener('online', () => {
  for (const s of streams) s.reconnectNow();
});

// LiveStream keeps an SSE stream open. It reconnects after drops with
// backoff, sending the last event id (when resume is on), and gives up only
// on answers that retrying cannot fix (401, 404, …) or when finished.
export class LiveStream {
  // url: the stream; getToken(): the bearer token; onEvent(ev) for each
  // event; onOpen() at each (re)connection; onState(state) with
  // 'connecting' | 'open' | 'retrying'; onFatal(err) when it gives up.
  // idleTimeout: reconnect when nothing (not even a heartbeat) arrived for
  // this long.
  constructor(url, { getToken, onEvent, onOpen, onState, onFatal, resume = true, idleTimeout = 40000 }) {
    this.url = url;
    this.getToken = getToken;
    this.onEvent = onEvent;
    this.onOpen = onOpen || (() => {});
    this.onState = onState || (() => {});
    this.onFatal = onFatal || (() => {});
    this.resume = resume;
    this.idleTimeout = idleTimeout;
    this.lastId = '';
    this.closed = false;
    this.controller = null;
    this.wake = null;
    this.attempt = 0;
    this.skipWait = false;
    this.generation = 0; // bumped by restart: events of an abandoned connection are ignored
  }

  start() {
    streams.add(this);
    this.run();
    return this;
  }

  // close stops the stream for good.
  close() {
    this.closed = true;
    streams.delete(this);
    if (this.controller) this.controller.abort();
    if (this.wake) this.wake();
  }

  // restart drops the current connection and connects again at once; fresh
  // forgets the last event id (the next connection starts from a snapshot).
  restart(fresh) {
    if (fresh) this.lastId = '';
    this.generation++;
    this.attempt = 0;
    this.skipWait = true;
    if (this.controller) this.controller.abort();
    if (this.wake) this.wake();
  }

  reconnectNow() {
    if (this.wake) this.wake();
  }

  async run() {
    while (!this.closed) {
      const controller = new AbortController();
      this.controller = controller;
      const generation = this.generation;
      this.skipWait = false;
      this.onState(this.attempt === 0 ? 'connecting' : 'retrying');
      let idle = null;
      const armIdle = () => {
        clearTimeout(idle);
        idle = setTimeout(() => controller.abort(), this.idleTimeout);
      };
      try {
        const headers = { Accept: 'text/event-stream', Authorization: 'Bearer ' + this.getToken() };
        if (this.resume && this.lastId) headers['Last-Event-ID'] = this.lastId;
        armIdle();
        let res;
        try {
          res = await fetch(this.url, { headers, signal: controller.signal, cache: 'no-store' });
        } catch (err) {
          throw controller.signal.aborted ? err : networkError();
        }
        if (!res.ok) {
          const err = await errorFromResponse(res);
          if (res.status === 401 || res.status === 403 || res.status === 404 || res.status === 400) {
            clearTimeout(idle);
            this.close();
            this.onFatal(err);
            return;
          }
          throw err;
        }
        this.onState('open');
        this.onOpen();
        const parser = new SSEParser((ev) => {
          if (this.closed || generation !== this.generation) return;
          this.attempt = 0;
          if (ev.id !== '') this.lastId = ev.id;
          this.onEvent(ev);
        });
        parser.lastId = this.lastId;
        const reader = res.body.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done || this.closed || generation !== this.generation) break;
          armIdle();
          parser.push(value);
          if (this.closed) break;
        }
        if (!this.closed && generation === this.generation) parser.end();
        reader.cancel().catch(() => {});
      } catch {
        // A dropped connection, an idle timeout, a 5xx: retry below.
      } finally {
        clearTimeout(idle);
      }
      if (this.closed) return;
      if (this.skipWait) {
        this.skipWait = false;
        continue;
      }
      this.attempt++;
      this.onState('retrying');
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, backoff(this.attempt));
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = null;
    }
  }
}
