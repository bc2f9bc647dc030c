// Small pieces shared by several screens.

import { h, icon, fmtNumber } from './dom.js';

// bindEnterToSend makes Enter send and Shift+Enter start a new line in a
// textarea (and leaves Enter alone while an input method is composing).
export function bindEnterToSend(textarea, send) {
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      send();
    }
  });
  if (!CSS.supports('field-sizing', 'content')) {
    const fit = () => {
      textarea.style.height = 'auto';
      textarea.style.height = Math.min(textarea.scrollHeight, 200) + 'px';
    };
    textarea.addEventListener('input', fit);
  }
}

// modelFacts describes a model's limits and price in a few words.
export function modelFacts(m) {
  const k = (n) => {
    if (n >= 1024 && n % 1024 === 0) return `${fmtNumber(n / 1024)}K`;
    return n >= 1000 ? `${fmtNumber(Math.round(n / 100) / 10)}K` : fmtNumber(n);
  };
  const price = m.creditsPer1kTokens;
  const priceText = price === 0 ? 'free' : `${fmtNumber(price)} ${price === 1 ? 'credit' : 'credits'} per 1k tokens`;
  return `${k(m.contextTokens)} tokens of context · replies up to ${k(m.maxOutputTokens)} tokens · ${priceText}`;
}

export function demoBadge() {
  return h('span', { class: 'badge demo', title: 'Built-in demo: placeholder text, no real model' }, 'Demo');
}

// confirmAction asks in a modal dialog before doing something that cannot
// be undone. action() runs on confirmation; while it runs the buttons are
// disabled, and if it fails its error is shown in the dialog (errorText
// turns it into words). It resolves true once the action succeeded, false
// when the person cancelled.
export function confirmAction({ id, title, text, confirmLabel, action, errorText }) {
  return new Promise((resolve) => {
    let done = false;
    const error = h('p', { class: 'form-error', attrs: { role: 'alert' } });
    const cancel = h('button', { type: 'button', class: 'button', autofocus: true, on: { click: () => dialog.close() } }, 'Cancel');
    const confirm = h('button', { id: id + '-confirm', type: 'button', class: 'button danger', on: { click: run } }, icon('trash'), confirmLabel);
    const heading = h('h2', { id: id + '-title', class: 'dialog-title' }, title);
    const dialog = h('dialog', { id, class: 'confirm-dialog', attrs: { 'aria-labelledby': id + '-title', 'aria-describedby': id + '-text' } },
      heading,
      h('p', { id: id + '-text', class: 'dialog-text' }, text),
      error,
      h('div', { class: 'form-actions' }, cancel, confirm));
    dialog.addEventListener('cancel', (e) => { if (confirm.disabled) e.preventDefault(); }); // not while it runs
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(done);
    });
    async function run() {
      confirm.disabled = cancel.disabled = true;
      error.textContent = '';
      try {
        await action();
        done = true;
        dialog.close();
      } catch (err) {
        error.textContent = errorText ? errorText(err) : String(err);
        confirm.disabled = cancel.disabled = false;
      }
    }
    document.body.append(dialog);
    dialog.showModal();
  });
}
