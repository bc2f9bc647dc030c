// The new-conversation screen: pick a model (demo models are labelled;
// price and context are shown), type the first message, start.

import { h, icon } from './dom.js';
import { friendlyError } from './api.js';
import { bindEnterToSend, demoBadge, modelFacts } from './widgets.js';

const LAST_MODEL_KEY = 'luna.lastModel';

export class NewChatView {
  constructor(app) {
    this.app = app;
    this.models = h('div', { class: 'model-list', attrs: { role: 'radiogroup', 'aria-labelledby': 'model-heading' } },
      h('p', { class: 'muted' }, 'Loading models…'));
    this.input = h('textarea', { id: 'new-chat-message', rows: 3, placeholder: 'Write your first message…', maxLength: 32000, attrs: { 'aria-label': 'First message' } });
    this.error = h('p', { id: 'new-chat-error', class: 'form-error', attrs: { role: 'alert' } });
    this.submit = h('button', { id: 'new-chat-send', type: 'submit', class: 'button primary' }, icon('send'), 'Start conversation');
    this.form = h('form', { class: 'new-chat-form', on: { submit: (e) => { e.preventDefault(); this.start(); } } },
      h('h2', { id: 'model-heading', class: 'section-heading' }, 'Model'),
      this.models,
      h('label', { htmlFor: 'new-chat-message', class: 'section-heading' }, 'Message'),
      this.input,
      h('p', { class: 'field-hint' }, 'Enter sends, Shift+Enter starts a new line.'),
      this.error,
      h('div', { class: 'form-actions' }, this.submit),
    );
    bindEnterToSend(this.input, () => this.start());
    this.el = h('section', { id: 'new-chat-view', class: 'view new-chat' },
      h('header', { class: 'view-header' }, h('h1', null, 'New conversation')),
      h('div', { class: 'view-body' }, this.form),
    );
    this.loadModels();
  }

  dispose() {
    this.disposed = true;
  }

  focus() {
    this.input.focus();
  }

  async loadModels() {
    let models;
    try {
      models = await this.app.models();
    } catch (err) {
      this.models.replaceChildren(h('p', { class: 'form-error' }, friendlyError(err)));
      return;
    }
    if (this.disposed) return;
    if (models.length === 0) {
      this.models.replaceChildren(h('p', { class: 'form-error' }, 'No models are available on this server yet.'));
      this.submit.disabled = true;
      return;
    }
    const last = localStorage.getItem(LAST_MODEL_KEY);
    const chosen = models.some((m) => m.id === last) ? last : models[0].id;
    this.models.replaceChildren(...models.map((m) => {
      const id = 'model-' + m.id.replace(/[^A-Za-z0-9_-]/g, '_');
      return h('label', { class: 'model-option', htmlFor: id },
        h('input', { type: 'radio', name: 'model', id, value: m.id, checked: m.id === chosen }),
        h('span', { class: 'model-text' },
          h('span', { class: 'model-name' }, m.name, m.demo ? demoBadge() : null),
          m.description ? h('span', { class: 'model-description' }, m.description) : null,
          h('span', { class: 'model-facts' }, modelFacts(m)),
        ),
      );
    }));
  }

  async start() {
    const text = this.input.value.trim();
    const picked = this.form.querySelector('input[name=model]:checked');
    this.error.textContent = '';
    if (!picked) {
      this.error.textContent = 'Choose a model first.';
      return;
    }
    if (!text) {
      this.error.textContent = 'Write a message to start the conversation.';
      this.input.focus();
      return;
    }
    this.submit.disabled = true;
    try {
      const conv = await this.app.api.post('/v1/conversations', { modelId: picked.value });
      localStorage.setItem(LAST_MODEL_KEY, picked.value);
      this.app.list.upsert(conv);
      this.app.pendingFirstMessage = { conversationId: conv.id, text };
      this.app.navigate('#/c/' + encodeURIComponent(conv.id));
    } catch (err) {
      this.submit.disabled = false;
      this.error.textContent = friendlyError(err);
    }
  }
}
