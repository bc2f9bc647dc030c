// The chat screen: history (older pages load when scrolling up), the reply
// streaming in as it arrives (resumed exactly after a network drop), a stop
// button, readable errors, rename, delete, a "jump to latest" button when
// scrolled up.
//
// A running reply is followed on GET /v1/messages/{id}/stream. Each event's
// id is the byte offset of the text reached; the view counts the bytes it
// has shown, so after a drop it reconnects with Last-Event-ID and receives
// exactly the missing bytes, and if its count ever disagrees with an id it
// starts over from a snapshot instead of showing a wrong text.
//
// Per-message actions: copy a reply; regenerate the last reply, continue it
// when it was stopped or cut off, edit the last question; page between the
// versions of a message (‹ 2 / 3 ›). The list shows the conversation's
// shown path (the API's leafMessageId); a version change anywhere, here or
// on another device, reloads it. A reply silent for a while says the model
// is slow and offers to keep waiting or stop.

import { h, icon, setChildren, credits as creditsText, randomId, utf8Length } from './dom.js';
import { ApiError, friendlyError, replyErrorText, query } from './api.js';
import { LiveStream } from './sse.js';
import { renderMarkdown } from './markdown.js';
import { bindEnterToSend, demoBadge } from './widgets.js';
import { PriceLine } from './price.js';

const running = (status) => status === 'pending' || status === 'streaming';

// continuable says whether a reply can be continued (the API's rule).
const continuable = (m) => m.role === 'assistant' && !!m.content &&
  (m.status === 'cancelled' || m.status === 'interrupted' || m.status === 'error' || (m.status === 'complete' && m.finishReason === 'length'));

// slowAfter is how long a reply may show nothing new before the view says
// the model is slow: a third of the server's limit, at most 10 s.
const slowAfter = (app) => Math.min(10000, Math.max(500, (app.replyIdleTimeoutMs || 90000) / 3));

export class ChatView {
  constructor(app, id) {
    this.app = app;
    this.conversationId = id;
    this.conversation = app.list.get(id) || null;
    this.records = new Map(); // message id → {data, el, content, meta, follow}
    this.next = null; // cursor of older messages
    this.loadingOlder = false;
    this.draft = null; // {text, clientMessageId} of a send that may have reached the server
    this.disposed = false;

    this.title = h('h1', { id: 'chat-title', class: 'chat-title' }, this.conversation ? (this.conversation.title || 'New conversation') : 'Conversation');
    this.modelLabel = h('span', { class: 'chat-model' });
    this.renameButton = h('button', { type: 'button', class: 'icon-button', title: 'Rename', attrs: { 'aria-label': 'Rename conversation' }, on: { click: () => this.startRename() } }, icon('edit'));
    this.deleteButton = h('button', { id: 'delete-conversation', type: 'button', class: 'icon-button', title: 'Delete', attrs: { 'aria-label': 'Delete conversation' },
      on: { click: () => this.app.deleteConversation({ id, ...this.conversation }) } }, icon('trash'));
    this.header = h('header', { class: 'view-header chat-header' },
      h('div', { class: 'chat-heading' }, this.title, this.modelLabel),
      h('div', { class: 'chat-actions' }, this.renameButton, this.deleteButton));

    this.olderButton = h('button', { type: 'button', id: 'load-older', class: 'button ghost small', hidden: true, on: { click: () => this.loadOlder() } }, 'Load earlier messages');
    this.beginning = h('p', { class: 'beginning', hidden: true }, 'This is the beginning of the conversation.');
    this.list = h('div', { class: 'message-list' });
    this.empty = h('p', { class: 'chat-empty', hidden: true }, 'Say something to start.');
    this.scroller = h('div', { id: 'messages', class: 'messages', tabIndex: 0, attrs: { role: 'log', 'aria-label': 'Messages', 'aria-live': 'polite' } },
      h('div', { class: 'history-top' }, this.olderButton, this.beginning),
      this.empty,
      this.list);
    this.scroller.addEventListener('scroll', () => {
      if (this.scroller.scrollTop < 150) this.loadOlder();
      this.updateJump();
    }, { passive: true });
    this.jumpButton = h('button', { id: 'jump-latest', type: 'button', class: 'button small jump-latest', hidden: true,
      on: { click: () => { this.scrollToBottom(); this.input.focus({ preventScroll: true }); } } }, icon('down'), 'Jump to latest');

    this.error = h('div', { id: 'chat-error', class: 'banner error', hidden: true, attrs: { role: 'alert' } });
    this.input = h('textarea', { id: 'composer-input', rows: 1, placeholder: 'Message Luna…', maxLength: 32000, attrs: { 'aria-label': 'Message', 'aria-describedby': 'composer-hint' } });
    this.sendButton = h('button', { id: 'send-button', type: 'submit', class: 'button primary icon-only', title: 'Send (Enter)', attrs: { 'aria-label': 'Send' } }, icon('send'));
    this.stopButton = h('button', { id: 'stop-button', type: 'button', class: 'button danger', hidden: true, on: { click: () => this.stop() } }, icon('stop'), h('span', null, 'Stop'));
    this.composer = h('form', { class: 'composer', on: { submit: (e) => { e.preventDefault(); this.send(); } } },
      this.input, this.stopButton, this.sendButton);
    bindEnterToSend(this.input, () => this.send());
    this.price = new PriceLine(app, this.input, () => ({ conversationId: id }));

    this.el = h('section', { id: 'chat-view', class: 'view chat', dataset: { conversationId: id } },
      this.header,
      h('div', { class: 'messages-wrap' }, this.scroller, this.jumpButton),
      h('div', { class: 'composer-area' },
        this.error,
        this.composer,
        this.price.el,
        h('p', { id: 'composer-hint', class: 'composer-hint' }, 'Enter sends · Shift+Enter for a new line')),
    );
    this.slowTimer = setInterval(() => this.checkSlow(), 250);

    this.off = [
      app.on('conversation', (c) => { if (c.id === id) this.setConversation(c); }),
      app.on('message', (e) => { if (e.message.conversationId === id) this.onMessageEvent(e.kind, e.message); }),
      app.on('resync', () => this.refresh()),
      app.on('conversation-deleted', (d) => { if (d.id === id) this.showDeleted(); }),
    ];
    this.load();
  }

  dispose() {
    this.disposed = true;
    clearInterval(this.slowTimer);
    this.price.dispose();
    for (const off of this.off) off();
    for (const rec of this.records.values()) if (rec.follow) rec.follow.stream.close();
  }

  focus() {
    this.input.focus({ preventScroll: true });
  }

  // ---- loading ----

  async load() {
    let conv;
    try {
      conv = await this.app.api.get('/v1/conversations/' + encodeURIComponent(this.conversationId));
    } catch (err) {
      if (this.disposed) return;
      if (err instanceof ApiError && err.status === 404) {
        this.el.replaceChildren(h('div', { class: 'not-found' },
          h('h1', null, 'Conversation not found'),
          h('p', null, 'It does not exist, or it is not yours.'),
          h('a', { class: 'button', href: '#/' }, 'Back to your conversations')));
        return;
      }
      this.showError(friendlyError(err));
      return;
    }
    if (this.disposed) return;
    this.setConversation(conv);
    this.app.list.upsert(conv);
    this.next = conv.messages.nextCursor;
    for (const m of conv.messages.items) this.add(m);
    this.updateHistoryTop();
    this.updateComposer();
    this.scrollToBottom();
    this.fillViewport();

    const pending = this.app.pendingFirstMessage;
    if (pending && pending.conversationId === this.conversationId) {
      this.app.pendingFirstMessage = null;
      this.input.value = pending.text;
      this.send();
    }
  }

  // refresh re-reads the newest page after the live events were
  // interrupted: new messages are added, finished ones updated.
  // showDeleted replaces the view once the conversation is deleted (here or
  // on another device).
  showDeleted() {
    if (this.deletedShown) return;
    this.deletedShown = true;
    for (const rec of this.records.values()) {
      if (rec.follow) rec.follow.stream.close();
      rec.follow = null;
    }
    const back = h('a', { class: 'button', href: '#/' }, 'Back to your conversations');
    this.el.replaceChildren(h('div', { class: 'not-found' },
      h('h1', null, 'Conversation deleted'),
      h('p', null, 'Its messages are gone. Your usage history and images are kept.'),
      back));
    if (this.el.isConnected && this.el.contains(document.activeElement) === false) back.focus({ preventScroll: true });
  }

  async refresh() {
    let conv;
    try {
      conv = await this.app.api.get('/v1/conversations/' + encodeURIComponent(this.conversationId));
    } catch {
      return;
    }
    if (this.disposed) return;
    this.setConversation(conv);
    for (const m of conv.messages.items) {
      const rec = this.records.get(m.id);
      if (!rec) this.add(m);
      else if (!rec.follow && (m.status !== rec.data.status || m.content !== rec.data.content)) this.update(rec, m);
    }
    this.updateComposer();
  }

  async loadOlder() {
    if (!this.next || this.loadingOlder || this.disposed) return;
    this.loadingOlder = true;
    this.olderButton.disabled = true;
    this.olderButton.textContent = 'Loading…';
    try {
      const page = await this.app.api.get(`/v1/conversations/${encodeURIComponent(this.conversationId)}/messages` + query({ cursor: this.next }));
      if (this.disposed) return;
      const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
      // An older page goes above everything shown, in its own order.
      const top = this.list.firstElementChild;
      for (const m of page.items) if (!this.records.has(m.id)) this.add(m, { before: top });
      this.next = page.nextCursor;
      this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom; // keep what was on screen in place
    } catch (err) {
      this.showError(friendlyError(err));
    } finally {
      this.loadingOlder = false;
      this.olderButton.disabled = false;
      this.olderButton.textContent = 'Load earlier messages';
      this.updateHistoryTop();
    }
    this.fillViewport();
  }

  // fillViewport loads older pages while the history does not fill the
  // screen (there is nothing to scroll up with then).
  fillViewport() {
    if (this.next && !this.loadingOlder && this.scroller.scrollHeight <= this.scroller.clientHeight + 10) this.loadOlder();
  }

  updateHistoryTop() {
    this.olderButton.hidden = !this.next;
    this.beginning.hidden = !!this.next || this.records.size === 0;
    this.empty.hidden = this.records.size > 0;
  }

  setConversation(c) {
    this.conversation = { ...this.conversation, ...c };
    if (c.leafMessageId && this.records.size > 0 && !this.records.has(c.leafMessageId)) this.reloadShown();
    this.title.textContent = c.title || 'New conversation';
    this.title.classList.toggle('untitled', !c.title);
    this.app.models().then((models) => {
      const m = models.find((x) => x.id === c.modelId);
      setChildren(this.modelLabel, m ? m.name : c.modelId, m && m.demo ? demoBadge() : null);
    }, () => { this.modelLabel.textContent = c.modelId; });
  }

  // ---- messages ----

  // add shows a message in time order; a running reply is followed.
  add(m, { before: at } = {}) {
    if (this.records.has(m.id)) return this.records.get(m.id);
    const content = h('div', { class: 'content' });
    const meta = h('div', { class: 'meta' });
    const actions = h('div', { class: 'message-actions', hidden: true });
    const slow = h('div', { class: 'slow-notice', hidden: true, attrs: { role: 'status' } });
    const bubble = h('div', { class: 'bubble' }, content);
    const el = h('article', { class: 'message ' + m.role, dataset: { id: m.id, role: m.role, status: m.status, createdAt: m.createdAt },
      attrs: { 'aria-label': m.role === 'user' ? 'You' : 'Reply' } },
    bubble, slow, meta, actions);
    const rec = { data: { ...m }, el, bubble, content, meta, actions, slow, follow: null, renderQueued: false };
    this.records.set(m.id, rec);
    // Insert before the first message created later (usually: at the end).
    let before = at;
    if (before === undefined) {
      const t = Date.parse(m.createdAt);
      before = null;
      for (let n = this.list.lastElementChild; n; n = n.previousElementSibling) {
        if (Date.parse(n.dataset.createdAt) <= t) break;
        before = n;
      }
    }
    this.list.insertBefore(el, before);
    this.renderContent(rec);
    this.renderMeta(rec);
    if (m.role === 'assistant' && running(m.status)) this.follow(rec);
    if (at === undefined) this.updateHistoryTop();
    this.queueActions();
    return rec;
  }

  update(rec, m) {
    rec.data = { ...rec.data, ...m };
    rec.el.dataset.status = rec.data.status;
    this.renderContent(rec);
    this.renderMeta(rec);
    this.updateComposer();
  }

  async onMessageEvent(kind, m) {
    const rec = this.records.get(m.id);
    if (kind === 'created' && !rec) {
      // Sent from another device (or before our own send returned): read
      // its text, which events leave out.
      let full = m;
      try {
        full = await this.app.api.get('/v1/messages/' + encodeURIComponent(m.id));
      } catch { /* show it without text; a later event or refresh fills it */ }
      if (this.disposed || this.records.has(m.id)) return;
      if (full.parentId !== undefined && [...this.records.values()].some((r) => r.data.parentId === full.parentId)) {
        // A new version of a message shown (regenerated or edited, here
        // or elsewhere): show the path that leads through it.
        this.reloadShown();
        return;
      }
      const nearBottom = this.isNearBottom();
      this.add(full);
      this.updateComposer();
      if (nearBottom) this.scrollToBottom();
      return;
    }
    if (kind === 'updated' && rec && !rec.follow) {
      if (running(m.status)) {
        if (rec.data.role === 'assistant') {
          rec.data.status = m.status;
          this.follow(rec);
        }
        return;
      }
      let full = m;
      try {
        full = await this.app.api.get('/v1/messages/' + encodeURIComponent(m.id));
      } catch { /* keep the status at least */ }
      if (!this.disposed) this.update(rec, full);
    }
  }

  // follow streams a running reply's text.
  follow(rec) {
    if (rec.follow) return;
    const f = { text: '', bytes: 0, stream: null, progressAt: Date.now() };
    rec.follow = f;
    f.stream = new LiveStream('/v1/messages/' + encodeURIComponent(rec.data.id) + '/stream', {
      getToken: () => this.app.token,
      onEvent: (ev) => this.onStreamEvent(rec, ev),
      onState: (state) => {
        rec.el.classList.toggle('reconnecting', state === 'retrying');
        this.renderMeta(rec);
      },
      onFatal: async (err) => {
        if (rec.follow === f) rec.follow = null;
        if (err.status === 401 || this.disposed) return;
        try {
          this.update(rec, await this.app.api.get('/v1/messages/' + encodeURIComponent(rec.data.id)));
        } catch { /* leave it as it is */ }
      },
    }).start();
    this.updateComposer();
  }

  onStreamEvent(rec, ev) {
    const f = rec.follow;
    if (!f || this.disposed) return;
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      return;
    }
    switch (ev.type) {
      case 'deleted': // the conversation was deleted while following
        f.stream.close();
        rec.follow = null;
        this.showDeleted();
        return;
      case 'snapshot':
        f.text = typeof data.content === 'string' ? data.content : '';
        f.bytes = utf8Length(f.text);
        break;
      case 'delta':
        if (typeof data.text !== 'string') return;
        f.text += data.text;
        f.bytes += utf8Length(data.text);
        break;
      case 'done':
      case 'error':
        break;
      default:
        return;
    }
    if (ev.id !== '' && Number(ev.id) !== f.bytes) {
      // What is on screen does not match the server's offsets: start over
      // from a snapshot rather than show a wrong text.
      f.stream.restart(true);
      return;
    }
    if (f.text !== rec.data.content) {
      f.progressAt = Date.now(); // new text: the model is not slow
      if (!rec.slow.hidden) rec.slow.hidden = true;
    }
    rec.data.content = f.text;
    if (ev.type === 'done' || ev.type === 'error') {
      f.stream.close();
      rec.follow = null;
      this.finish(rec, data);
      return;
    }
    if (rec.data.status === 'pending' && f.text) {
      rec.data.status = 'streaming';
      rec.el.dataset.status = 'streaming';
      this.renderMeta(rec);
    }
    this.queueRender(rec);
  }

  // finish records a reply's end (from its stream's done/error event or
  // the answer to a stop).
  finish(rec, end) {
    rec.slow.hidden = true;
    rec.data.status = end.status;
    rec.data.error = end.error || null;
    if (typeof end.creditsCharged === 'number') rec.data.creditsCharged = end.creditsCharged;
    if (end.finishReason !== undefined) rec.data.finishReason = end.finishReason;
    rec.el.dataset.status = end.status;
    const nearBottom = this.isNearBottom();
    this.renderContent(rec);
    this.renderMeta(rec);
    this.updateComposer();
    if (nearBottom) this.scrollToBottom();
  }

  queueRender(rec) {
    if (rec.renderQueued) return;
    rec.renderQueued = true;
    requestAnimationFrame(() => {
      rec.renderQueued = false;
      if (this.disposed) return;
      const nearBottom = this.isNearBottom();
      this.renderContent(rec);
      if (nearBottom) this.scrollToBottom();
      else this.updateJump();
    });
  }

  renderContent(rec) {
    const m = rec.data;
    const text = m.content || '';
    if (rec.renderedText === text && rec.renderedStatus === m.status) return;
    rec.renderedText = text;
    rec.renderedStatus = m.status;
    if (m.role === 'user') {
      rec.content.textContent = text;
      return;
    }
    if (!text && running(m.status)) {
      rec.content.replaceChildren(h('span', { class: 'typing', attrs: { 'aria-label': 'Writing' } }, h('i'), h('i'), h('i')));
      return;
    }
    rec.content.replaceChildren(renderMarkdown(text));
  }

  renderMeta(rec) {
    const m = rec.data;
    const parts = [];
    // Screen readers wait for a reply to be complete before reading it.
    rec.el.setAttribute('aria-busy', String(running(m.status)));
    if (m.role === 'assistant') {
      if (running(m.status)) {
        parts.push(h('span', { class: 'status' }, rec.el.classList.contains('reconnecting') ? 'Reconnecting…' : 'Writing…'));
      } else if (m.status === 'cancelled') {
        parts.push(h('span', { class: 'status' }, 'Stopped'));
      }
      if (!running(m.status) && m.creditsCharged > 0) parts.push(h('span', { class: 'cost' }, creditsText(m.creditsCharged)));
      if (m.status === 'complete' && m.finishReason === 'length') parts.push(h('span', { class: 'status' }, 'Cut off at the length limit'));
      if (m.status === 'error' || m.status === 'interrupted') {
        parts.push(h('p', { class: 'message-error', attrs: { role: 'alert' } }, replyErrorText(m.status, m.error)));
      }
    }
    rec.meta.replaceChildren(...parts);
    rec.meta.hidden = parts.length === 0;
  }

  // ---- per-message actions ----

  // lastShown returns the last message shown (the conversation's leaf)
  // and the question before it.
  lastShown() {
    const els = this.list.children;
    const last = els.length ? this.records.get(els[els.length - 1].dataset.id) : null;
    const question = els.length > 1 ? this.records.get(els[els.length - 2].dataset.id) : null;
    return { last, question };
  }

  // queueActions redraws the toolbars once after a batch of changes.
  queueActions() {
    if (this.actionsQueued) return;
    this.actionsQueued = true;
    queueMicrotask(() => {
      this.actionsQueued = false;
      if (!this.disposed) this.renderAllActions();
    });
  }

  renderAllActions() {
    const { last, question } = this.lastShown();
    const busy = !!this.runningReply() || !!this.acting;
    for (const rec of this.records.values()) this.renderActions(rec, { isLast: rec === last, isQuestion: rec === question && rec.data.role === 'user', busy });
  }

  // renderActions draws a message's toolbar: its versions' pager, and what
  // can be done with it now.
  renderActions(rec, { isLast, isQuestion, busy }) {
    const m = rec.data;
    if (rec.editing) return;
    const parts = [];
    const ids = Array.isArray(m.versionIds) ? m.versionIds : [m.id];
    if (ids.length > 1) {
      const i = Math.max(0, ids.indexOf(m.id));
      const what = m.role === 'user' ? 'question' : 'reply';
      parts.push(h('span', { class: 'version-pager', attrs: { role: 'group', 'aria-label': `Versions of this ${what}` } },
        h('button', { type: 'button', class: 'action-button version-prev', disabled: busy || i === 0, title: 'Previous version',
          attrs: { 'aria-label': 'Previous version' }, on: { click: () => this.selectVersion(ids[i - 1]) } }, icon('left')),
        h('span', { class: 'version-label' }, `${i + 1} / ${ids.length}`),
        h('button', { type: 'button', class: 'action-button version-next', disabled: busy || i === ids.length - 1, title: 'Next version',
          attrs: { 'aria-label': 'Next version' }, on: { click: () => this.selectVersion(ids[i + 1]) } }, icon('right'))));
    }
    if (m.role === 'assistant' && !running(m.status)) {
      if (m.content) {
        parts.push(h('button', { type: 'button', class: 'action-button copy-reply', on: { click: (e) => copyReply(m.content, e.currentTarget) } },
          icon('copy'), h('span', null, 'Copy')));
      }
      if (isLast && !busy) {
        if (continuable(m)) {
          parts.push(h('button', { type: 'button', class: 'action-button continue-reply', on: { click: () => this.act(rec, 'continue') } },
            icon('forward'), h('span', null, 'Continue')));
        }
        parts.push(h('button', { type: 'button', class: 'action-button regenerate-reply', on: { click: () => this.act(rec, 'regenerate') } },
          icon('refresh'), h('span', null, 'Regenerate')));
      }
    }
    if (isQuestion && !busy) {
      parts.push(h('button', { type: 'button', class: 'action-button edit-question', on: { click: () => this.startEdit(rec) } },
        icon('edit'), h('span', null, 'Edit')));
    }
    rec.actions.replaceChildren(...parts);
    rec.actions.hidden = parts.length === 0;
  }

  // act regenerates, continues or edits. A retry of the same action after
  // a network failure reuses its request id, so it happens once.
  async act(rec, action, body = {}) {
    if (this.acting || this.runningReply()) return;
    this.hideError();
    const key = action + ' ' + rec.data.id + ' ' + (body.content || '');
    if (!this.pendingAction || this.pendingAction.key !== key) this.pendingAction = { key, clientRequestId: randomId() };
    this.acting = true;
    this.renderAllActions();
    let ok = false;
    try {
      const res = await this.app.api.post(`/v1/messages/${encodeURIComponent(rec.data.id)}/${action}`,
        { ...body, clientRequestId: this.pendingAction.clientRequestId });
      this.pendingAction = null;
      if (this.disposed) return;
      if (action === 'continue' && this.records.get(rec.data.id) === rec) {
        this.update(rec, res.assistantMessage);
        this.follow(rec);
      } else {
        await this.reloadShown();
      }
      this.scrollToBottom();
      ok = true;
    } catch (err) {
      if (err instanceof ApiError && err.status !== 0) this.pendingAction = null; // refused: nothing happened
      if (!this.disposed) this.showError(friendlyError(err));
    } finally {
      this.acting = false;
      if (!this.disposed) this.renderAllActions();
    }
    return ok;
  }

  async selectVersion(id) {
    if (!id || this.acting) return;
    this.hideError();
    this.acting = true;
    try {
      const conv = await this.app.api.post(`/v1/messages/${encodeURIComponent(id)}/select`);
      if (!this.disposed) this.showConversation(conv);
    } catch (err) {
      if (!this.disposed) this.showError(friendlyError(err));
    } finally {
      this.acting = false;
      if (!this.disposed) this.renderAllActions();
    }
  }

  // reloadShown reads the path the conversation shows now and shows it
  // instead (after a version changed). Calls made while one runs share it.
  reloadShown() {
    if (!this.reloading) {
      this.reloading = this.app.api.get('/v1/conversations/' + encodeURIComponent(this.conversationId)).then((conv) => {
        if (!this.disposed) this.showConversation(conv);
      }, () => {}).finally(() => { this.reloading = null; });
    }
    return this.reloading;
  }

  // showConversation replaces the messages shown with conv's.
  showConversation(conv) {
    const nearBottom = this.isNearBottom();
    for (const rec of this.records.values()) if (rec.follow) rec.follow.stream.close();
    this.records.clear();
    this.list.replaceChildren();
    this.next = conv.messages.nextCursor;
    this.setConversation(conv);
    for (const m of conv.messages.items) this.add(m);
    this.updateHistoryTop();
    this.updateComposer();
    if (nearBottom) this.scrollToBottom();
  }

  // startEdit turns the last question into a form: the edited text is
  // sent as a new version of it, with a new reply.
  startEdit(rec) {
    if (rec.editing) return;
    rec.editing = true;
    const input = h('textarea', { class: 'edit-input', rows: 2, maxLength: 32000, value: rec.data.content, attrs: { 'aria-label': 'Edit your message' } });
    const cancel = () => {
      rec.editing = false;
      form.replaceWith(rec.bubble);
      this.renderAllActions();
    };
    const form = h('form', { class: 'edit-form', on: { submit: async (e) => {
      e.preventDefault();
      const content = input.value.trim();
      if (!content) return;
      if (content === rec.data.content) {
        cancel();
        return;
      }
      send.disabled = true;
      rec.editing = false;
      const ok = await this.act(rec, 'edit', { content });
      if (!ok || this.records.get(rec.data.id) === rec) {
        // Refused: keep the form with the text.
        rec.editing = true;
        send.disabled = false;
      }
    } } },
    input,
    h('div', { class: 'edit-actions' },
      h('button', { type: 'button', class: 'button small', on: { click: cancel } }, 'Cancel'),
      h('button', { type: 'submit', class: 'button primary small edit-send' }, 'Send')));
    const send = form.querySelector('.edit-send');
    bindEnterToSend(input, () => form.requestSubmit());
    input.addEventListener('keydown', (e) => { if (e.key === 'Escape') cancel(); });
    rec.bubble.replaceWith(form);
    rec.actions.hidden = true;
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  // checkSlow says so when a running reply has shown nothing new for a
  // while (first token included): keep waiting, or stop.
  checkSlow() {
    const rec = this.runningReply();
    if (!rec || !rec.follow || !rec.slow.hidden) return;
    if (Date.now() - rec.follow.progressAt < slowAfter(this.app)) return;
    const f = rec.follow;
    rec.slow.replaceChildren(
      h('span', null, 'The model is slow to answer.'),
      h('button', { type: 'button', class: 'button small', id: 'slow-wait', on: { click: () => {
        f.progressAt = Date.now(); // ask again after another while
        rec.slow.hidden = true;
      } } }, 'Keep waiting'),
      h('button', { type: 'button', class: 'button small danger', id: 'slow-stop', on: { click: () => this.stop() } }, 'Stop'));
    rec.slow.hidden = false;
  }

  // ---- composer ----

  runningReply() {
    for (const rec of this.records.values()) if (rec.data.role === 'assistant' && running(rec.data.status)) return rec;
    return null;
  }

  updateComposer() {
    const r = this.runningReply();
    this.stopButton.hidden = !r;
    this.sendButton.hidden = !!r;
    if (!r) {
      this.stopButton.disabled = false;
      this.stopButton.lastChild.textContent = 'Stop';
      if (this.errorKind === 'wait') this.hideError(); // the reply it asked to wait for is over
    }
    this.renderAllActions();
    this.updateJump();
  }

  // updateJump shows "Jump to latest" while the newest messages are out of
  // sight (scrolled up, or a reply growing below).
  updateJump() {
    this.jumpButton.hidden = this.isNearBottom();
  }

  async send() {
    const text = this.input.value.trim();
    if (!text || this.sending) return;
    if (this.runningReply()) {
      this.showError('Wait for the reply to finish, or stop it, before sending another message.', 'wait');
      return;
    }
    this.hideError();
    // A retry of the same text after a failure reuses its id, so a message
    // that did reach the server is not sent twice.
    if (!this.draft || this.draft.text !== text) this.draft = { text, clientMessageId: randomId() };
    this.sending = true;
    this.sendButton.disabled = true;
    try {
      const res = await this.app.api.post(`/v1/conversations/${encodeURIComponent(this.conversationId)}/messages`,
        { content: text, clientMessageId: this.draft.clientMessageId });
      if (this.disposed) return;
      this.draft = null;
      if (this.input.value.trim() === text) this.input.value = '';
      this.input.dispatchEvent(new Event('input'));
      this.add(res.userMessage);
      this.add(res.assistantMessage);
      this.updateHistoryTop();
      this.updateComposer();
      this.scrollToBottom();
    } catch (err) {
      if (err instanceof ApiError && err.status !== 0) this.draft = null; // refused: nothing was stored
      const c = this.app.credits;
      this.showError(friendlyError(err, c ? { available: c.available } : {}));
    } finally {
      this.sending = false;
      this.sendButton.disabled = false;
    }
  }

  async stop() {
    const rec = this.runningReply();
    if (!rec) return;
    this.stopButton.disabled = true;
    this.stopButton.lastChild.textContent = 'Stopping…';
    try {
      const m = await this.app.api.post('/v1/messages/' + encodeURIComponent(rec.data.id) + '/cancel');
      if (this.disposed) return;
      if (!running(m.status)) {
        // The answer is the final message: authoritative, whatever the
        // stream has delivered so far.
        if (rec.follow) {
          rec.follow.stream.close();
          rec.follow = null;
        }
        rec.data.content = m.content;
        this.finish(rec, m);
      }
    } catch (err) {
      this.stopButton.disabled = false;
      this.stopButton.lastChild.textContent = 'Stop';
      this.showError(friendlyError(err));
    }
  }

  // ---- rename ----

  startRename() {
    if (!this.conversation) return;
    const input = h('input', { type: 'text', class: 'rename-input', value: this.conversation.title || '', maxLength: 200, attrs: { 'aria-label': 'Conversation title' } });
    const form = h('form', { class: 'rename-form', on: { submit: async (e) => {
      e.preventDefault();
      const title = input.value.trim();
      if (!title) return;
      try {
        const c = await this.app.api.patch('/v1/conversations/' + encodeURIComponent(this.conversationId), { title });
        this.app.list.upsert(c);
        this.setConversation(c);
      } catch (err) {
        this.showError(friendlyError(err));
      }
      form.replaceWith(this.title);
      this.renameButton.hidden = false;
    } } }, input);
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        form.replaceWith(this.title);
        this.renameButton.hidden = false;
        this.renameButton.focus();
      }
    });
    this.title.replaceWith(form);
    this.renameButton.hidden = true;
    input.focus();
    input.select();
  }

  // ---- helpers ----

  showError(text, kind = 'error') {
    this.errorKind = kind;
    this.error.replaceChildren(h('span', null, text),
      h('button', { type: 'button', class: 'icon-button', attrs: { 'aria-label': 'Dismiss' }, on: { click: () => this.hideError() } }, icon('close')));
    this.error.hidden = false;
  }

  hideError() {
    this.error.hidden = true;
    this.errorKind = null;
  }

  isNearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.updateJump();
  }
}

// copyReply puts a reply's text (its Markdown) on the clipboard.
function copyReply(text, button) {
  const label = button.querySelector('span');
  const done = (ok) => {
    label.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { label.textContent = 'Copy'; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(() => done(true), () => done(false));
  else done(false);
}
