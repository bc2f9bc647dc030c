// Small pieces shared by several screens.

import { h, fmtNumber } from './dom.js';

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
