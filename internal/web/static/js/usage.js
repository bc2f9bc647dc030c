// The usage history: the credits now, then every ledger entry (GET
// /v1/credits/entries), newest first, paged: what changed, by how much,
// when, and what for (a reply in a conversation, an image, sign-up credits…).
// Holds are shown apart from charges: a hold is set aside while a reply or
// an image is made, and released or turned into the charge when it is done.

import { h, fmtNumber, credits as creditsText, relativeTime } from './dom.js';
import { friendlyError, query } from './api.js';

export class UsageView {
  constructor(app) {
    this.app = app;
    this.next = null;
    this.loading = false;
    this.disposed = false;

    this.summary = h('dl', { id: 'usage-summary', class: 'usage-summary' });
    this.list = h('ol', { id: 'usage-list', class: 'usage-list', attrs: { 'aria-labelledby': 'usage-entries-heading' } });
    this.empty = h('p', { class: 'muted', hidden: true }, 'Nothing yet.');
    this.error = h('p', { id: 'usage-error', class: 'form-error', attrs: { role: 'alert' } });
    this.more = h('button', { id: 'usage-more', type: 'button', class: 'button ghost small load-more', hidden: true, on: { click: () => this.loadMore() } }, 'Load more');

    this.el = h('section', { id: 'usage-view', class: 'view usage' },
      h('header', { class: 'view-header' }, h('h1', null, 'Usage history')),
      h('div', { class: 'view-body' },
        this.summary,
        h('p', { class: 'muted usage-help' }, 'A reply or an image first holds what it may cost; when it is done, the hold becomes the charge for what it really cost, and the rest is released.'),
        h('h2', { id: 'usage-entries-heading', class: 'section-heading' }, 'Activity'),
        this.error, this.list, this.empty, this.more),
    );
    this.off = [
      app.on('credits', () => this.renderSummary()),
      app.on('resync', () => this.load()),
    ];
    this.renderSummary();
    this.load();
  }

  dispose() {
    this.disposed = true;
    for (const off of this.off) off();
  }

  focus() {}

  renderSummary() {
    const c = this.app.credits;
    if (!c) return;
    const item = (term, value, id) => h('div', { class: 'usage-figure' }, h('dt', null, term), h('dd', { id }, value));
    this.summary.replaceChildren(
      item('Available', creditsText(c.available), 'usage-available'),
      item('Held for work in progress', creditsText(c.reserved), 'usage-held'),
      item('Balance', creditsText(c.balance), 'usage-balance'));
  }

  async load() {
    this.loading = true;
    try {
      const page = await this.app.api.get('/v1/credits/entries' + query({ limit: 50 }));
      if (this.disposed) return;
      this.list.replaceChildren(...page.items.map((e) => this.row(e)));
      this.next = page.nextCursor;
      this.error.textContent = '';
    } catch (err) {
      if (!this.disposed) this.error.textContent = friendlyError(err);
    } finally {
      this.loading = false;
    }
    this.render();
  }

  async loadMore() {
    if (this.loading || !this.next) return;
    this.loading = true;
    this.more.disabled = true;
    try {
      const page = await this.app.api.get('/v1/credits/entries' + query({ limit: 50, cursor: this.next }));
      if (this.disposed) return;
      this.list.append(...page.items.map((e) => this.row(e)));
      this.next = page.nextCursor;
    } catch (err) {
      this.error.textContent = friendlyError(err);
    } finally {
      this.loading = false;
      this.more.disabled = false;
    }
    this.render();
  }

  render() {
    this.empty.hidden = this.list.children.length > 0;
    this.more.hidden = !this.next;
  }

  // row shows one entry: what it was, what for, when, and the amount.
  row(e) {
    const { what, hold } = describe(e);
    const change = hold ? e.reservedDelta : e.amount;
    const amount = h('span', { class: 'usage-amount' + (hold ? ' hold' : change > 0 ? ' credit' : change < 0 ? ' debit' : '') },
      (change > 0 ? '+' : change < 0 ? '\u2212' : '') + fmtNumber(Math.abs(change)) + (hold ? ' held' : ''));
    if (hold && change < 0) amount.textContent = fmtNumber(-change) + ' released';
    return h('li', { class: 'usage-entry' + (hold ? ' hold' : ''), dataset: { id: e.id, kind: e.kind } },
      h('div', { class: 'usage-what' },
        h('span', { class: 'usage-title' }, what),
        this.target(e),
        h('time', { class: 'usage-time', attrs: { datetime: e.createdAt }, title: new Date(e.createdAt).toLocaleString() }, relativeTime(e.createdAt))),
      amount);
  }

  // target links to what an entry was for, when it can be shown.
  target(e) {
    const ref = e.for || {};
    if (ref.type === 'message' && ref.conversationId) {
      const deleted = ref.conversationTitle === null || (this.app.list && this.app.list.deleted.has(ref.conversationId));
      if (deleted) return h('span', { class: 'usage-target muted' }, 'in a deleted conversation');
      return h('a', { class: 'usage-target', href: '#/c/' + encodeURIComponent(ref.conversationId) },
        ref.conversationTitle ? `in \u201c${ref.conversationTitle}\u201d` : 'in an untitled conversation');
    }
    if (ref.type === 'image' && ref.imageId) return h('a', { class: 'usage-target', href: '#/images' }, 'see your images');
    return null;
  }
}

// describe says in words what an entry was, and whether it only moved
// credits in or out of the held amount.
function describe(e) {
  const ref = (e.for && e.for.type) || '';
  const thing = ref === 'image' ? 'an image' : ref === 'message' ? 'a reply' : 'work in progress';
  switch (e.kind) {
    case 'grant':
      if (ref === 'signup') return { what: 'Welcome credits' };
      if (ref === 'invite') return { what: 'Invite credits' };
      return { what: e.note ? `Credits added: ${e.note}` : 'Credits added' };
    case 'adjust':
      return { what: e.note ? `Correction: ${e.note}` : 'Correction by the operator' };
    case 'reserve':
      return { what: `Held for ${thing}`, hold: true };
    case 'capture':
      return { what: ref === 'image' ? 'Image' : ref === 'message' ? 'Reply' : 'Charge' };
    case 'release':
      return { what: `Hold released: ${thing} failed or was interrupted`, hold: true };
    case 'expire':
      return { what: 'Hold expired', hold: true };
    case 'charge': {
      const what = (ref === 'image' ? 'Image' : ref === 'message' ? 'Reply' : 'Charge') + ', beyond its hold';
      return { what: e.shortfall > 0 ? `${what} (${e.shortfall} credits unpaid)` : what };
    }
    default:
      // A kind this page does not know yet: show its amounts as they are.
      return { what: e.kind, hold: e.amount === 0 };
  }
}
