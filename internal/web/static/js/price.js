// The price line under a message box: what sending the draft would hold,
// asked of POST /v1/estimate (the server's own estimate and balance cap) a
// moment after the typing stops, and again when the balance changes.

import { h, credits } from './dom.js';
import { friendlyError } from './api.js';

const DEBOUNCE_MS = 350;

export class PriceLine {
  // target() returns {conversationId} or {modelId} (or null: nothing to
  // price yet); input is the message box.
  constructor(app, input, target) {
    this.app = app;
    this.input = input;
    this.target = target;
    this.seq = 0;
    this.timer = 0;
    this.el = h('p', { id: 'price-line', class: 'price-line', hidden: true, attrs: { 'aria-live': 'polite' } });
    this.onInput = () => this.schedule();
    input.addEventListener('input', this.onInput);
    this.off = app.on('credits', () => { if (!this.el.hidden) this.schedule(); });
  }

  dispose() {
    clearTimeout(this.timer);
    this.seq++;
    this.input.removeEventListener('input', this.onInput);
    this.off();
  }

  // schedule asks for a new estimate once the typing pauses.
  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), DEBOUNCE_MS);
  }

  async refresh() {
    const content = this.input.value.trim();
    const target = this.target();
    const seq = ++this.seq;
    if (!content || !target) {
      this.el.hidden = true;
      delete this.el.dataset.credits;
      return;
    }
    let est;
    try {
      est = await this.app.api.post('/v1/estimate', { ...target, content });
    } catch (err) {
      if (seq !== this.seq) return;
      this.show(friendlyError(err), 'warn');
      return;
    }
    if (seq !== this.seq) return; // a newer draft is being priced
    this.el.dataset.credits = String(est.credits);
    this.el.dataset.enough = String(est.enough);
    if (!est.enough) {
      this.show(`Not enough credits: this reply needs at least ${credits(est.creditsNeeded)} and you have ${credits(est.creditsAvailable)} available.`, 'warn');
    } else if (est.credits === 0) {
      this.show('This model is free.', '');
    } else if (est.capped) {
      this.show(`Holds up to ${credits(est.credits)}, all you have available: the reply may be shortened. You pay for what it uses.`, 'warn');
    } else {
      this.show(`Holds up to ${credits(est.credits)} while it is written; you pay for what it uses.`, '');
    }
  }

  show(text, kind) {
    this.el.textContent = text;
    this.el.classList.toggle('warn', kind === 'warn');
    this.el.hidden = false;
  }
}
