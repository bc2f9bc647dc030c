// The conversation list: newest first, live (conversation.created/updated
// events insert and reorder; titles appear when they are generated;
// conversation.deleted removes), paged with infinite scroll. Each row has a
// delete button (with a confirmation).

import { h, icon, relativeTime } from './dom.js';
import { friendlyError, query } from './api.js';
import { plainText } from './markdown.js';

export class ConversationList {
  constructor(app) {
    this.app = app;
    this.items = new Map(); // id → conversation
    this.rows = new Map(); // id → li
    this.next = null;
    this.selected = null;
    this.loading = false;
    this.loaded = false;
    this.deleted = new Set(); // ids deleted: late events about them are stale
    this.ul = h('ul', { id: 'conversation-list', class: 'conversation-list' });
    this.empty = h('p', { class: 'list-empty', hidden: true }, 'No conversations yet. Start one with New chat.');
    this.error = h('p', { class: 'list-error', hidden: true, attrs: { role: 'alert' } });
    this.more = h('button', { type: 'button', class: 'button ghost small load-more', hidden: true, on: { click: () => this.loadMore() } }, 'Load more');
    this.heading = h('h2', { id: 'conversations-heading', class: 'sidebar-heading' }, 'Conversations');
    this.el = h('div', { class: 'conversations' },
      this.heading,
      this.ul, this.empty, this.error, this.more);
    this.off = [
      app.on('conversation', (c) => this.upsert(c)),
      app.on('conversation-deleted', (d) => this.remove(d.id)),
      app.on('resync', () => this.load()),
    ];
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadMore();
    });
    this.observer.observe(this.more);
    this.clock = setInterval(() => this.render(), 60000);
  }

  dispose() {
    for (const off of this.off) off();
    this.observer.disconnect();
    clearInterval(this.clock);
  }

  // load (re)reads the first page.
  async load() {
    this.loading = true;
    try {
      const page = await this.app.api.get('/v1/conversations' + query({ limit: 30 }));
      this.items.clear();
      for (const c of page.items) if (!this.deleted.has(c.id)) this.items.set(c.id, c);
      this.next = page.nextCursor;
      this.loaded = true;
      this.error.hidden = true;
    } catch (err) {
      this.error.textContent = friendlyError(err);
      this.error.hidden = false;
    } finally {
      this.loading = false;
    }
    this.render();
  }

  async loadMore() {
    if (this.loading || !this.next) return;
    this.loading = true;
    try {
      const page = await this.app.api.get('/v1/conversations' + query({ limit: 30, cursor: this.next }));
      for (const c of page.items) if (!this.items.has(c.id) && !this.deleted.has(c.id)) this.items.set(c.id, c);
      this.next = page.nextCursor;
    } catch (err) {
      this.error.textContent = friendlyError(err);
      this.error.hidden = false;
    } finally {
      this.loading = false;
    }
    this.render();
  }

  // setHeadingLevel makes the list's heading the page's h1 (at home, where
  // phones show only the list) or an h2.
  setHeadingLevel(level) {
    const tag = 'H' + level;
    if (this.heading.tagName === tag) return;
    const next = h(tag.toLowerCase(), { id: 'conversations-heading', class: 'sidebar-heading' }, 'Conversations');
    this.heading.replaceWith(next);
    this.heading = next;
  }

  remove(id) {
    this.deleted.add(id);
    if (this.items.delete(id)) this.render();
  }

  upsert(c) {
    if (this.deleted.has(c.id)) return;
    const old = this.items.get(c.id);
    if (old && Date.parse(old.updatedAt) > Date.parse(c.updatedAt)) return; // a late, stale event
    this.items.set(c.id, c);
    this.render();
  }

  get(id) {
    return this.items.get(id);
  }

  select(id) {
    this.selected = id;
    for (const [cid, li] of this.rows) {
      const a = li.firstChild;
      if (cid === id) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  render() {
    const list = [...this.items.values()].sort((a, b) =>
      Date.parse(b.updatedAt) - Date.parse(a.updatedAt) || Date.parse(b.createdAt) - Date.parse(a.createdAt) || (a.id < b.id ? 1 : -1));
    const seen = new Set();
    let prev = null;
    for (const c of list) {
      seen.add(c.id);
      let li = this.rows.get(c.id);
      if (!li) {
        li = h('li', { class: 'conversation', dataset: { id: c.id } });
        this.rows.set(c.id, li);
      }
      this.fill(li, c);
      const want = prev ? prev.nextSibling : this.ul.firstChild;
      if (want !== li) this.ul.insertBefore(li, want);
      prev = li;
    }
    for (const [id, li] of this.rows) {
      if (!seen.has(id)) {
        li.remove();
        this.rows.delete(id);
      }
    }
    this.empty.hidden = !this.loaded || list.length > 0;
    this.more.hidden = !this.next;
  }

  fill(li, c) {
    const title = c.title || 'New conversation';
    const key = [title, c.lastMessagePreview, c.updatedAt, c.generatingMessageId, Math.floor(Date.now() / 60000)].join('\u0000');
    if (li.dataset.key === key) return;
    li.dataset.key = key;
    const a = h('a', { class: 'conversation-link', href: '#/c/' + encodeURIComponent(c.id) },
      h('span', { class: 'conversation-title' + (c.title ? '' : ' untitled') }, title),
      h('span', { class: 'conversation-preview' }, plainText(c.lastMessagePreview || '')),
      h('span', { class: 'conversation-time' },
        c.generatingMessageId ? h('span', { class: 'writing' }, 'Writing…') : relativeTime(c.updatedAt)),
    );
    if (c.id === this.selected) a.setAttribute('aria-current', 'page');
    const del = h('button', { type: 'button', class: 'icon-button conversation-delete', title: 'Delete',
      attrs: { 'aria-label': `Delete “${title}”` }, on: { click: () => this.app.deleteConversation(this.items.get(c.id) || c) } }, icon('trash'));
    li.replaceChildren(a, del);
  }
}
