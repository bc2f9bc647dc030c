// A Markdown renderer for model output, safe by construction: it builds
// DOM nodes with createElement and text nodes only, so no HTML or script in
// the model's text can ever be parsed as markup. It knows paragraphs,
// headings, fenced code blocks, inline code, bold, italic, strikethrough,
// lists (nested), block quotes, tables, rules and links. Links go only to
// http:, https: and mailto: URLs (anything else stays text) and open in a
// new tab without an opener or a referrer. Images in the text are shown as
// links, never loaded. Unclosed constructs (a reply still streaming)
// render sensibly: an open code fence is a code block to the end.
//
// Code blocks are coloured by highlight.js (vendored, static/vendor). Its
// output is an HTML string of <span class="hljs-…"> and escaped text; the
// page may not parse HTML strings (Trusted Types), so highlighted() reads
// that small, fixed format into spans and text nodes itself, and shows the
// plain text whenever anything else appears.

import hljs from '../vendor/highlight/highlight.min.js';

let headingCeiling = 2; // the deepest heading level allowed next while rendering

const MAX_DEPTH = 8; // nesting of quotes/lists/emphasis; deeper is text
const LINK_LABEL_MAX = 1000;
const LINK_DEST_MAX = 2048;
const EMPHASIS_SCAN_MAX = 2000;

// renderMarkdown returns a DocumentFragment for the Markdown text src.
export function renderMarkdown(src) {
  headingCeiling = 2;
  const frag = document.createDocumentFragment();
  const lines = String(src).replace(/\r\n?/g, '\n').split('\n');
  for (const node of blocks(lines, 0)) frag.append(node);
  return frag;
}

// plainText reads Markdown as plain text on one line, for previews: the
// markers (headings, lists, quotes, emphasis, code ticks, link syntax) go,
// the words stay.
export function plainText(src) {
  const frag = renderMarkdown(src);
  for (const head of frag.querySelectorAll('.md-code-head')) head.remove();
  const parts = [];
  const walk = (node) => {
    for (const c of node.childNodes) {
      if (c.nodeType === Node.TEXT_NODE) {
        parts.push(c.data);
        continue;
      }
      const spaced = !INLINE.has(c.tagName);
      if (spaced) parts.push(' ');
      walk(c);
      if (spaced) parts.push(' ');
    }
  };
  walk(frag);
  return parts.join('').replace(/\s+/g, ' ').trim();
}

const INLINE = new Set(['A', 'CODE', 'EM', 'STRONG', 'DEL', 'SPAN']);

// safeUrl returns the normalised URL if it is an absolute http:, https: or
// mailto: URL, else null.
export function safeUrl(raw) {
  const s = String(raw).trim();
  if (!s || s.length > LINK_DEST_MAX) return null;
  let u;
  try {
    u = new URL(s); // no base: relative URLs throw
  } catch {
    return null;
  }
  if (u.protocol === 'mailto:') return u.href;
  if ((u.protocol === 'http:' || u.protocol === 'https:') && u.hostname) return u.href;
  return null;
}

function el(tag, className) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  return e;
}

// ---- blocks ----

const FENCE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const LIST_ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])([ \t]+(.*))?$/;
const TABLE_SEP = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

function isBlank(line) {
  return /^[ \t]*$/.test(line);
}

function indentOf(line) {
  let n = 0;
  for (const c of line) {
    if (c === ' ') n++;
    else if (c === '\t') n += 4 - (n % 4);
    else break;
  }
  return n;
}

// dedent removes up to n columns of leading spaces.
function dedent(line, n) {
  let i = 0, col = 0;
  while (i < line.length && col < n) {
    if (line[i] === ' ') col++;
    else if (line[i] === '\t') col += 4 - (col % 4);
    else break;
    i++;
  }
  return line.slice(i);
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || LIST_ITEM.test(line);
}

function isTableStart(lines, i) {
  return lines[i].includes('|') && i + 1 < lines.length && lines[i + 1].includes('-') && TABLE_SEP.test(lines[i + 1]) &&
    (lines[i + 1].includes('|') || splitRow(lines[i]).length === 1);
}

// blocks renders lines as a list of block nodes.
function blocks(lines, depth) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) { i++; continue; }

    let m;
    if ((m = FENCE.exec(line))) {
      const fence = m[1];
      const body = [];
      const open = indentOf(line);
      i++;
      while (i < lines.length) {
        const close = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(lines[i]);
        if (close && close[1][0] === fence[0] && close[1].length >= fence.length) { i++; break; }
        body.push(dedent(lines[i], open));
        i++;
      }
      out.push(codeBlock(body.join('\n'), m[2]));
      continue;
    }
    if ((m = HEADING.exec(line))) {
      // The page's h1 comes first; levels never skip one (a reply that
      // starts at ### still gets an h2), so the page's outline stays whole.
      const level = Math.min(6, m[1].length + 1, headingCeiling);
      headingCeiling = Math.min(6, level + 1);
      const hd = el('h' + level, 'md-heading');
      inline(m[2] || '', hd, depth, false);
      out.push(hd);
      i++;
      continue;
    }
    if (RULE.test(line)) {
      out.push(el('hr'));
      i++;
      continue;
    }
    if (QUOTE.test(line) && depth < MAX_DEPTH) {
      const inner = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
        inner.push(m[1]);
        i++;
      }
      const bq = el('blockquote');
      for (const n of blocks(inner, depth + 1)) bq.append(n);
      out.push(bq);
      continue;
    }
    if (LIST_ITEM.test(line) && depth < MAX_DEPTH) {
      i = list(lines, i, depth, out);
      continue;
    }
    if (isTableStart(lines, i)) {
      i = table(lines, i, depth, out);
      continue;
    }
    // A paragraph: up to a blank line or the start of another block.
    const para = [line.trim()];
    i++;
    while (i < lines.length && !isBlank(lines[i]) && !startsBlock(lines[i]) && !isTableStart(lines, i)) {
      para.push(lines[i].trim());
      i++;
    }
    const p = el('p');
    inline(para.join('\n'), p, depth, false);
    out.push(p);
  }
  return out;
}

function codeBlock(text, lang) {
  const wrap = el('div', 'md-code');
  const head = el('div', 'md-code-head');
  const label = el('span', 'md-code-lang');
  label.textContent = (lang || 'code').slice(0, 24);
  const copy = el('button', 'md-code-copy');
  copy.type = 'button';
  copy.textContent = 'Copy';
  copy.addEventListener('click', () => copyText(text, copy));
  head.append(label, copy);
  const pre = el('pre');
  const code = el('code', 'hljs');
  const colored = highlighted(text, lang);
  if (colored) code.append(colored);
  else code.textContent = text;
  pre.append(code);
  wrap.append(head, pre);
  return wrap;
}

const HIGHLIGHT_MAX = 40000; // longer code stays plain: colouring it would stall the page
const AUTODETECT_MAX = 3000; // guessing the language tries them all: only for short blocks
const highlightCache = new Map(); // lang + text → hljs HTML ('' = none); a streaming reply re-renders often

// highlighted returns the code coloured as DOM nodes, or null to show it
// as plain text (unknown language, too long, or an unexpected output).
function highlighted(text, lang) {
  if (!text || text.length > HIGHLIGHT_MAX) return null;
  const key = (lang || '') + '\u0000' + text;
  let html = highlightCache.get(key);
  if (html === undefined) {
    html = '';
    try {
      if (lang && hljs.getLanguage(lang)) {
        html = hljs.highlight(text, { language: lang, ignoreIllegals: true }).value;
      } else if (!lang && text.length <= AUTODETECT_MAX) {
        const r = hljs.highlightAuto(text);
        if (r.relevance >= 5) html = r.value;
      }
    } catch {
      html = '';
    }
    if (highlightCache.size >= 200) highlightCache.delete(highlightCache.keys().next().value);
    highlightCache.set(key, html);
  }
  if (!html) return null;
  const frag = spansFrom(html);
  return frag && frag.textContent === text ? frag : null;
}

const HLJS_TOKEN = /<span class="([\w .-]*)">|<\/span>|([^<]+)/y;
const HLJS_ENTITY = /&(amp|lt|gt|quot|#x27);/g;
const HLJS_CHARS = { amp: '&', lt: '<', gt: '>', quot: '"', '#x27': '\'' };

// spansFrom reads highlight.js output: nested <span class="…"> with
// escaped text between. Anything else (another tag, an unknown entity, an
// unbalanced span) gives null.
function spansFrom(html) {
  const frag = document.createDocumentFragment();
  const stack = [frag];
  HLJS_TOKEN.lastIndex = 0;
  while (HLJS_TOKEN.lastIndex < html.length) {
    const at = HLJS_TOKEN.lastIndex;
    const m = HLJS_TOKEN.exec(html);
    if (!m) return null;
    if (m[1] !== undefined) {
      const span = el('span', m[1]);
      stack[stack.length - 1].append(span);
      stack.push(span);
    } else if (m[2] !== undefined) {
      const raw = m[2];
      if (/&(?!(amp|lt|gt|quot|#x27);)/.test(raw)) return null;
      stack[stack.length - 1].append(document.createTextNode(raw.replace(HLJS_ENTITY, (_, e) => HLJS_CHARS[e])));
    } else {
      if (stack.length === 1) return null;
      stack.pop();
    }
    if (HLJS_TOKEN.lastIndex === at) return null;
  }
  return stack.length === 1 ? frag : null;
}

function copyText(text, button) {
  const done = (ok) => {
    button.textContent = ok ? 'Copied' : 'Select and copy';
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(() => done(true), () => done(false));
  } else {
    done(false);
  }
}

// list renders the list starting at lines[i] into out and returns the index
// after it.
function list(lines, i, depth, out) {
  const first = LIST_ITEM.exec(lines[i]);
  const ordered = /\d/.test(first[2]);
  const marker = ordered ? first[2].slice(-1) : first[2];
  const baseIndent = first[1].length;
  const listEl = el(ordered ? 'ol' : 'ul');
  if (ordered) {
    const start = parseInt(first[2], 10);
    if (start !== 1) listEl.start = start;
  }
  let loose = false;
  const items = [];
  while (i < lines.length) {
    const m = LIST_ITEM.exec(lines[i]);
    if (!m || m[1].length !== baseIndent) break;
    const itemOrdered = /\d/.test(m[2]);
    if (itemOrdered !== ordered || (ordered ? m[2].slice(-1) : m[2]) !== marker) break;
    const rest = m[4] || '';
    const contentIndent = m[1].length + m[2].length + Math.min(4, Math.max(1, m[3] ? indentOf(m[3]) : 1));
    const body = [rest];
    i++;
    let sawBlank = false;
    while (i < lines.length) {
      const line = lines[i];
      if (isBlank(line)) {
        sawBlank = true;
        body.push('');
        i++;
        continue;
      }
      const ind = indentOf(line);
      if (ind >= contentIndent || (ind > baseIndent && LIST_ITEM.test(line))) {
        body.push(dedent(line, Math.min(ind, contentIndent)));
        sawBlank = false;
        i++;
        continue;
      }
      if (!sawBlank && !startsBlock(line) && !isBlank(body[body.length - 1])) {
        body.push(line.trim()); // lazy continuation of the item's paragraph
        i++;
        continue;
      }
      break;
    }
    while (body.length > 1 && isBlank(body[body.length - 1])) body.pop();
    if (sawBlank && i < lines.length && LIST_ITEM.test(lines[i])) loose = true;
    if (body.slice(1).some(isBlank)) loose = true;
    items.push(body);
    // A blank line followed by something that is not a next item ends the list.
    if (i < lines.length && isBlank(lines[i - 1] ?? '') && !LIST_ITEM.test(lines[i])) break;
  }
  for (const body of items) {
    const li = el('li');
    const nodes = blocks(body, depth + 1);
    if (!loose && nodes.length > 0 && nodes[0].tagName === 'P') {
      // Tight list: the first paragraph's content goes straight in the item.
      const p = nodes.shift();
      while (p.firstChild) li.append(p.firstChild);
    }
    for (const n of nodes) li.append(n);
    listEl.append(li);
  }
  out.push(listEl);
  return i;
}

function splitRow(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const cells = [];
  let cur = '';
  let inCode = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && s[i + 1] === '|') { cur += '|'; i++; continue; }
    if (c === '`') inCode = !inCode;
    if (c === '|' && !inCode) { cells.push(cur.trim()); cur = ''; continue; }
    cur += c;
  }
  cells.push(cur.trim());
  return cells;
}

function table(lines, i, depth, out) {
  const header = splitRow(lines[i]);
  const aligns = splitRow(lines[i + 1]).map((c) => {
    const left = c.startsWith(':'), right = c.endsWith(':');
    return left && right ? 'center' : right ? 'right' : left ? 'left' : '';
  });
  i += 2;
  const wrap = el('div', 'md-table');
  const t = el('table');
  const thead = el('thead');
  const hr = el('tr');
  header.forEach((cell, k) => hr.append(tableCell('th', cell, aligns[k], depth)));
  thead.append(hr);
  t.append(thead);
  const tbody = el('tbody');
  while (i < lines.length && !isBlank(lines[i]) && lines[i].includes('|')) {
    const cells = splitRow(lines[i]);
    const tr = el('tr');
    for (let k = 0; k < header.length; k++) tr.append(tableCell('td', cells[k] ?? '', aligns[k], depth));
    tbody.append(tr);
    i++;
  }
  t.append(tbody);
  wrap.append(t);
  out.push(wrap);
  return i;
}

function tableCell(tag, text, align, depth) {
  const c = el(tag);
  if (align) c.className = 'align-' + align;
  inline(text, c, depth, false);
  return c;
}

// ---- inline ----

const PUNCT = /[!-/:-@[-`{-~]/;
const ALNUM = /[\p{L}\p{N}]/u;
const SPACE = /\s/;

function link(href, parent) {
  const a = el('a');
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
  a.referrerPolicy = 'no-referrer';
  parent.append(a);
  return a;
}

// inline renders text with inline Markdown into parent. noLinks is set
// inside a link's label (links do not nest).
function inline(text, parent, depth, noLinks) {
  let buf = '';
  const flush = () => {
    if (buf) parent.append(document.createTextNode(buf));
    buf = '';
  };
  if (depth > MAX_DEPTH * 2) {
    parent.append(document.createTextNode(text));
    return;
  }
  const noCloser = {}; // backtick run length -> no closing run after this index
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text[i];

    if (c === '\\' && i + 1 < n && PUNCT.test(text[i + 1])) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    if (c === '\n') {
      flush();
      parent.append(el('br'));
      i++;
      continue;
    }
    if (c === '`') {
      let run = 1;
      while (text[i + run] === '`') run++;
      const ticks = '`'.repeat(run);
      let j = -1;
      if (!(noCloser[run] !== undefined && noCloser[run] <= i)) {
        let from = i + run;
        while ((j = text.indexOf(ticks, from)) >= 0 && (text[j + run] === '`' || text[j - 1] === '`')) {
          from = j + 1;
          while (text[from] === '`') from++;
        }
        if (j < 0) noCloser[run] = i;
      }
      if (j >= 0) {
        flush();
        let code = text.slice(i + run, j).replace(/\n/g, ' ');
        if (code.length > 2 && code[0] === ' ' && code[code.length - 1] === ' ' && code.trim() !== '') code = code.slice(1, -1);
        const ce = el('code');
        ce.textContent = code;
        parent.append(ce);
        i = j + run;
      } else {
        buf += ticks;
        i += run;
      }
      continue;
    }
    if (c === '*' || c === '_' || c === '~') {
      const end = emphasis(text, i, parent, depth, noLinks, flush);
      if (end > i) {
        i = end;
      } else {
        let run = 1;
        while (text[i + run] === c) run++;
        buf += c.repeat(run);
        i += run;
      }
      continue;
    }
    if (c === '!' && text[i + 1] === '[' && !noLinks) {
      const l = parseLink(text, i + 1);
      if (l) {
        // Never load images named by model output: show a link instead.
        const href = safeUrl(l.dest);
        flush();
        if (href) {
          const a = link(href, parent);
          a.className = 'md-image-link';
          a.textContent = 'Image: ' + (l.label || href);
        } else {
          parent.append(document.createTextNode(text.slice(i, l.end)));
        }
        i = l.end;
        continue;
      }
    }
    if (c === '[' && !noLinks) {
      const l = parseLink(text, i);
      if (l) {
        const href = safeUrl(l.dest);
        flush();
        if (href) {
          inline(l.label || href, link(href, parent), depth + 1, true);
        } else {
          // An unsafe or relative link: shown as the text it is.
          parent.append(document.createTextNode(text.slice(i, l.end)));
        }
        i = l.end;
        continue;
      }
    }
    if (c === '<' && !noLinks) {
      const m = /^<((?:https?|mailto):[^\s<>]*)>/i.exec(text.slice(i, i + LINK_DEST_MAX + 2));
      const href = m && safeUrl(m[1]);
      if (href) {
        flush();
        link(href, parent).textContent = m[1];
        i += m[0].length;
        continue;
      }
    }
    if ((c === 'h' || c === 'H') && !noLinks && (i === 0 || !ALNUM.test(text[i - 1]))) {
      const m = /^https?:\/\/[^\s<>"'`]+/i.exec(text.slice(i, i + LINK_DEST_MAX));
      if (m) {
        let url = m[0];
        // Trailing punctuation belongs to the sentence, not the URL (but
        // keep a ')' that closes a '(' inside the URL).
        for (;;) {
          const last = url[url.length - 1];
          if (/[.,;:!?*_~'"\]]/.test(last)) { url = url.slice(0, -1); continue; }
          if (last === ')' && (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length) { url = url.slice(0, -1); continue; }
          break;
        }
        const href = safeUrl(url);
        if (href && url.length > 'https://'.length) {
          flush();
          link(href, parent).textContent = url;
          i += url.length;
          continue;
        }
      }
    }
    buf += c;
    i++;
  }
  flush();
}

// emphasis renders *em*, **strong**, ***both***, _em_, __strong__ or
// ~~strike~~ starting at i, returning the index after it, or i when there
// is none.
function emphasis(text, i, parent, depth, noLinks, flush) {
  const c = text[i];
  let run = 1;
  while (text[i + run] === c && run < 3) run++;
  if (text[i + run] === c) return i; // four or more: literal
  if (c === '~' && run !== 2) return i;
  const after = text[i + run];
  if (after === undefined || SPACE.test(after)) return i;
  if (c === '_' && i > 0 && ALNUM.test(text[i - 1])) return i; // snake_case
  const limit = Math.min(text.length, i + run + EMPHASIS_SCAN_MAX);
  for (let j = i + run + 1; j <= limit - run; j++) {
    if (text[j] === '\n' && text[j + 1] === '\n') return i;
    if (text[j] === '`') {
      // Delimiters inside a code span do not close.
      const close = text.indexOf('`', j + 1);
      if (close > 0 && close < limit) { j = close; continue; }
    }
    if (text[j] === '\\') { j++; continue; }
    if (text[j] !== c) continue;
    let k = 0;
    while (text[j + k] === c) k++;
    if (k !== run || SPACE.test(text[j - 1])) { j += k - 1; continue; }
    if (c === '_' && j + k < text.length && ALNUM.test(text[j + k])) { j += k - 1; continue; }
    const inner = text.slice(i + run, j);
    flush();
    let target = parent;
    if (c === '~') {
      target = el('del');
    } else if (run === 3) {
      target = el('strong');
      const em = el('em');
      target.append(em);
      inline(inner, em, depth + 1, noLinks);
      parent.append(target);
      return j + run;
    } else {
      target = el(run === 2 ? 'strong' : 'em');
    }
    inline(inner, target, depth + 1, noLinks);
    parent.append(target);
    return j + run;
  }
  return i;
}

// parseLink reads [label](dest "title") at text[i] === '['. It returns
// {label, dest, end} or null.
function parseLink(text, i) {
  let depth = 0, j = i;
  const labelLimit = Math.min(text.length, i + LINK_LABEL_MAX);
  for (; j < labelLimit; j++) {
    const c = text[j];
    if (c === '\\') { j++; continue; }
    if (c === '[') depth++;
    else if (c === ']' && --depth === 0) break;
  }
  if (j >= labelLimit || text[j] !== ']' || text[j + 1] !== '(') return null;
  const label = text.slice(i + 1, j);
  let k = j + 2;
  while (text[k] === ' ') k++;
  let dest = '';
  const destLimit = Math.min(text.length, k + LINK_DEST_MAX);
  if (text[k] === '<') {
    const close = text.indexOf('>', k);
    if (close < 0 || close > destLimit) return null;
    dest = text.slice(k + 1, close);
    k = close + 1;
  } else {
    let parens = 0;
    const start = k;
    for (; k < destLimit; k++) {
      const c = text[k];
      if (c === '\\') { k++; continue; }
      if (SPACE.test(c)) break;
      if (c === '(') parens++;
      else if (c === ')') {
        if (parens === 0) break;
        parens--;
      }
    }
    dest = text.slice(start, k);
  }
  while (text[k] === ' ') k++;
  if (text[k] === '"' || text[k] === '\'') {
    const q = text[k];
    const close = text.indexOf(q, k + 1);
    if (close < 0 || close > destLimit) return null;
    k = close + 1;
    while (text[k] === ' ') k++;
  }
  if (text[k] !== ')') return null;
  return { label, dest, end: k + 1 };
}
