// Small DOM helpers. Everything on the page is built with createElement and
// text nodes: no HTML strings anywhere (the page's Trusted Types policy
// would refuse them anyway).

const PROPS = new Set(['id', 'type', 'value', 'name', 'checked', 'disabled', 'hidden', 'title',
  'placeholder', 'autocomplete', 'required', 'rows', 'min', 'max', 'minLength', 'maxLength',
  'tabIndex', 'htmlFor', 'href', 'target', 'rel', 'src', 'alt', 'loading', 'decoding', 'inputMode',
  'spellcheck', 'enterKeyHint', 'autofocus', 'width', 'height']);

// h builds an element: h('button', {class: 'x', on: {click: fn}}, 'Label').
// props: class, text, dataset {}, attrs {} (attributes), on {} (listeners),
// and the common DOM properties above. Children are nodes or strings (as
// text); null, undefined and false are skipped; arrays are flattened.
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key === 'attrs') for (const [a, v] of Object.entries(value)) { if (v !== null && v !== undefined && v !== false) el.setAttribute(a, v === true ? '' : String(v)); }
      else if (key === 'on') for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
      else if (PROPS.has(key)) el[key] = value;
      else throw new Error(`h: unknown property ${key}`);
    }
  }
  append(el, children);
  return el;
}

// setChildren replaces el's children, skipping null, undefined and false
// as h does (replaceChildren would show them as text).
export function setChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (typeof c === 'string' || typeof c === 'number') el.append(document.createTextNode(String(c)));
    else el.append(c);
  }
}

// icon returns a decorative inline SVG built from path data.
const ICONS = {
  plus: 'M12 5v14M5 12h14',
  image: 'M4 5h16v14H4zM4 16l5-5 4 4 3-3 4 4M15 9.5a1.5 1.5 0 1 0 0-.01',
  back: 'M15 5l-7 7 7 7',
  send: 'M5 12h13M13 6l6 6-6 6',
  stop: 'M7 7h10v10H7z',
  edit: 'M4 20h4L19 9l-4-4L4 16zM13 7l4 4',
  close: 'M6 6l12 12M18 6L6 18',
  logout: 'M14 4h5v16h-5M10 8l-4 4 4 4M6 12h10',
  chat: 'M4 5h16v11H9l-5 4z',
  coin: 'M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zM12 7v10M9 9.5h4.5a1.75 1.75 0 0 1 0 3.5h-3a1.75 1.75 0 0 0 0 3.5H15',
  copy: 'M9 9h11v11H9zM5 15H4V4h11v1',
  external: 'M14 4h6v6M20 4l-9 9M18 14v6H4V6h6',
  trash: 'M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3',
  down: 'M12 5v14M6 13l6 6 6-6',
  left: 'M15 6l-6 6 6 6',
  right: 'M9 6l6 6-6 6',
  refresh: 'M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7',
  forward: 'M5 12h14M13 6l6 6-6 6M5 6v12',
};

export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}

const numberFormat = new Intl.NumberFormat();

export function fmtNumber(n) {
  return numberFormat.format(n);
}

export function credits(n) {
  return `${fmtNumber(n)} ${Math.abs(n) === 1 ? 'credit' : 'credits'}`;
}

// relativeTime says when something happened, briefly.
export function relativeTime(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  const d = new Date(t);
  const sameYear = d.getFullYear() === new Date(now).getFullYear();
  return d.toLocaleDateString(undefined, sameYear ? { month: 'short', day: 'numeric' } : { year: 'numeric', month: 'short', day: 'numeric' });
}

// randomId returns a random identifier for idempotent requests. It uses
// getRandomValues, which (unlike randomUUID) works on plain-http origins too.
export function randomId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// utf8Length is the number of bytes of s in UTF-8: reply streams count
// their offsets in bytes.
export function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { n += 4; i++; } else n += 3;
    } else n += 3;
  }
  return n;
}
