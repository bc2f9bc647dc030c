// The new chat: an empty chat whose message box has a model dropdown beside
// it (demo models labelled; price and context shown under it) and the price
// of the reply. It is the home screen on wide screens and "New chat"
// everywhere. Sending creates the conversation with the chosen model
// (POST /v1/conversations), then the chat screen sends the message; from
// then on the model is fixed.

import { h, icon } from './dom.js';
import { friendlyError } from './api.js';
import { bindEnterToSend, modelFacts } from './widgets.js';
import { PriceLine } from './price.js';

const LAST_MODEL_KEY = 'luna.lastModel';

export class NewChatView {
  constructor(app) {
    this.app = app;
    this.modelList = [];
    this.select = h('select', { id: 'model-select', name: 'model', disabled: true, attrs: { 'aria-label': 'Model', 'aria-describedby': 'model-facts' },
      on: { change: () => this.onModelChange() } },
    h('option', { value: '' }, 'Loading models…'));
    this.input = h('textarea', { id: 'new-chat-message', rows: 1, placeholder: 'Message Luna…', maxLength: 32000, attrs: { 'aria-label': 'Message' } });
    this.error = h('p', { id: 'new-chat-error', class: 'form-error', attrs: { role: 'alert' } });
    this.submit = h('button', { id: 'new-chat-send', type: 'submit', class: 'button primary icon-only', title: 'Send (Enter)', attrs: { 'aria-label': 'Send' } }, icon('send'));
    this.facts = h('p', { id: 'model-facts', class: 'model-facts-line' });
    this.price = new PriceLine(app, this.input, () => (this.select.value ? { modelId: this.select.value } : null));
    this.form = h('form', { class: 'composer new-composer', on: { submit: (e) => { e.preventDefault(); this.start(); } } },
      this.select, this.input, this.submit);
    bindEnterToSend(this.input, () => this.start());
    this.el = h('section', { id: 'new-chat-view', class: 'view chat new-chat' },
      h('header', { class: 'view-header chat-header' }, h('h1', { class: 'chat-title' }, 'New chat')),
      h('div', { class: 'messages-wrap' },
        h('div', { class: 'messages new-chat-empty' },
          h('div', { class: 'home-inner' },
            h('span', { class: 'logo big', attrs: { 'aria-hidden': 'true' } }),
            h('p', { class: 'home-title' }, 'What can I help with?'),
            h('p', { class: 'muted' }, 'Choose a model beside the box and write. The model stays with the conversation.')))),
      h('div', { class: 'composer-area' }, this.error, this.form, this.facts, this.price.el),
    );
    this.loadModels();
  }

  dispose() {
    this.disposed = true;
    this.price.dispose();
  }

  focus() {
    this.input.focus();
  }

  async loadModels() {
    let models;
    try {
      models = await this.app.models();
    } catch (err) {
      this.error.textContent = friendlyError(err);
      return;
    }
    if (this.disposed) return;
    this.modelList = models;
    if (models.length === 0) {
      this.select.replaceChildren(h('option', { value: '' }, 'No models'));
      this.error.textContent = 'No models are available on this server yet.';
      this.submit.disabled = true;
      return;
    }
    const last = localStorage.getItem(LAST_MODEL_KEY);
    const chosen = models.some((m) => m.id === last) ? last : models[0].id;
    this.select.replaceChildren(...models.map((m) =>
      h('option', { value: m.id, attrs: { selected: m.id === chosen } }, m.name + (m.demo ? ' (demo)' : ''))));
    this.select.value = chosen;
    this.select.disabled = false;
    this.onModelChange();
  }

  onModelChange() {
    const m = this.modelList.find((x) => x.id === this.select.value);
    this.facts.textContent = m ? (m.demo ? 'Demo: placeholder text, no real model · ' : '') + modelFacts(m) : '';
    this.price.schedule();
  }

  async start() {
    const text = this.input.value.trim();
    const modelId = this.select.value;
    this.error.textContent = '';
    if (!modelId) {
      this.error.textContent = 'Choose a model first.';
      return;
    }
    if (!text) {
      this.error.textContent = 'Write a message to start the conversation.';
      this.input.focus();
      return;
    }
    if (this.starting) return;
    this.starting = true;
    this.submit.disabled = true;
    try {
      const conv = await this.app.api.post('/v1/conversations', { modelId });
      localStorage.setItem(LAST_MODEL_KEY, modelId);
      this.app.list.upsert(conv);
      this.app.pendingFirstMessage = { conversationId: conv.id, text };
      this.app.navigate('#/c/' + encodeURIComponent(conv.id));
    } catch (err) {
      this.starting = false;
      this.submit.disabled = false;
      this.error.textContent = friendlyError(err);
    }
  }
}
