// The images screen: a prompt, a size, the price before generating, live
// job status (image.updated events), and the gallery with a full-size view.

import { h, icon, setChildren, fmtNumber, credits as creditsText, randomId, relativeTime } from './dom.js';
import { ApiError, friendlyError, query } from './api.js';
import { bindEnterToSend } from './widgets.js';

const SIZES = [512, 768, 1024];
const SIZE_KEY = 'luna.imageSize';

const STATUS_TEXT = {
  pending: 'Queued…',
  processing: 'Generating…',
  completed: 'Done',
  failed: 'Failed',
};

// imageSrc accepts only URLs Luna hands out: its own paths or http(s)
// (presigned object-store URLs).
function imageSrc(url) {
  if (typeof url !== 'string') return null;
  if (url.startsWith('/') && !url.startsWith('//')) return url;
  try {
    const u = new URL(url);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
  } catch {
    return null;
  }
}

export class ImagesView {
  constructor(app) {
    this.app = app;
    this.jobs = new Map(); // id → job
    this.cards = new Map(); // id → li
    this.next = null;
    this.loading = false;
    this.loaded = false;
    this.disposed = false;
    this.request = null; // {key, clientRequestId} of a create that may have reached the server

    const saved = Number(localStorage.getItem(SIZE_KEY));
    const size = SIZES.includes(saved) ? saved : 1024;
    this.prompt = h('textarea', { id: 'image-prompt', rows: 3, maxLength: 2000, placeholder: 'A lighthouse on a cliff at dusk, oil painting…' });
    this.sizes = h('div', { class: 'sizes' }, ...SIZES.map((s) => h('label', { class: 'size-option' },
      h('input', { type: 'radio', name: 'resolution', value: String(s), checked: s === size, on: { change: () => localStorage.setItem(SIZE_KEY, String(s)) } }),
      h('span', null, `${s} × ${s}`))));
    this.cost = h('p', { id: 'image-cost', class: 'cost-line' });
    this.error = h('p', { id: 'image-error', class: 'form-error', attrs: { role: 'alert' } });
    this.submit = h('button', { id: 'image-generate', type: 'submit', class: 'button primary' }, icon('image'), h('span', null, 'Generate'));
    this.form = h('form', { id: 'image-form', class: 'image-form', on: { submit: (e) => { e.preventDefault(); this.create(); } } },
      h('label', { htmlFor: 'image-prompt', class: 'section-heading' }, 'Describe the image'),
      this.prompt,
      h('fieldset', { class: 'size-field' }, h('legend', { class: 'section-heading' }, 'Size'), this.sizes),
      this.cost,
      this.error,
      h('div', { class: 'form-actions' }, this.submit),
    );
    bindEnterToSend(this.prompt, () => this.create());

    this.gallery = h('ul', { id: 'gallery', class: 'gallery', attrs: { 'aria-label': 'Your images' } });
    this.empty = h('p', { id: 'gallery-empty', class: 'muted', hidden: true }, 'No images yet. Describe one above.');
    this.more = h('button', { type: 'button', class: 'button ghost small load-more', hidden: true, on: { click: () => this.loadMore() } }, 'Load more');
    this.listError = h('p', { class: 'form-error', attrs: { role: 'alert' } });

    this.lightboxImg = h('img', { alt: '' });
    this.lightboxCaption = h('p', { class: 'lightbox-caption' });
    this.lightboxOpen = h('a', { class: 'button small', target: '_blank', rel: 'noopener noreferrer' }, icon('external'), 'Open original');
    this.lightbox = h('dialog', { id: 'lightbox', class: 'lightbox', attrs: { 'aria-label': 'Image' } },
      h('div', { class: 'lightbox-inner' },
        h('div', { class: 'lightbox-bar' },
          this.lightboxOpen,
          h('button', { type: 'button', id: 'lightbox-close', class: 'icon-button', attrs: { 'aria-label': 'Close' }, on: { click: () => this.lightbox.close() } }, icon('close'))),
        h('div', { class: 'lightbox-frame' }, this.lightboxImg),
        this.lightboxCaption));
    this.lightbox.addEventListener('click', (e) => { if (e.target === this.lightbox) this.lightbox.close(); });

    this.el = h('section', { id: 'images-view', class: 'view images' },
      h('header', { class: 'view-header' }, h('h1', null, 'Images')),
      h('div', { class: 'view-body' },
        this.form,
        h('h2', { class: 'section-heading gallery-heading' }, 'Gallery'),
        this.listError, this.gallery, this.empty, this.more),
      this.lightbox);

    this.off = [
      app.on('image', (job) => this.upsert(job)),
      app.on('credits', () => this.renderCost()),
      app.on('resync', () => this.load()),
    ];
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadMore();
    });
    this.observer.observe(this.more);
    this.renderCost();
    this.load();
  }

  dispose() {
    this.disposed = true;
    for (const off of this.off) off();
    this.observer.disconnect();
    if (this.lightbox.open) this.lightbox.close();
  }

  focus() {
    this.prompt.focus({ preventScroll: true });
  }

  renderCost() {
    const cost = this.app.imageCost;
    const c = this.app.credits;
    const enough = !c || c.available >= cost;
    setChildren(this.cost,
      h('span', { class: 'price' }, `Costs ${creditsText(cost)}`),
      c ? h('span', { class: enough ? 'muted' : 'warning' }, ` · you have ${fmtNumber(c.available)} available`) : null,
      h('span', { class: 'muted note' }, '. Held while the image is made; released if it fails.'),
    );
    this.cost.dataset.cost = String(cost);
    this.submit.lastChild.textContent = `Generate (${creditsText(cost)})`;
  }

  async load() {
    this.loading = true;
    try {
      const page = await this.app.api.get('/v1/images' + query({ limit: 24 }));
      if (this.disposed) return;
      this.jobs.clear();
      for (const j of page.items) this.jobs.set(j.id, j);
      if (page.items.length > 0) this.app.noteImageCost(page.items[0].cost);
      this.next = page.nextCursor;
      this.loaded = true;
      this.listError.textContent = '';
    } catch (err) {
      this.listError.textContent = friendlyError(err);
    } finally {
      this.loading = false;
    }
    this.renderCost();
    this.render();
  }

  async loadMore() {
    if (this.loading || !this.next) return;
    this.loading = true;
    try {
      const page = await this.app.api.get('/v1/images' + query({ limit: 24, cursor: this.next }));
      if (this.disposed) return;
      for (const j of page.items) if (!this.jobs.has(j.id)) this.jobs.set(j.id, j);
      this.next = page.nextCursor;
    } catch (err) {
      this.listError.textContent = friendlyError(err);
    } finally {
      this.loading = false;
    }
    this.render();
  }

  upsert(job) {
    if (this.disposed) return;
    this.app.noteImageCost(job.cost);
    this.jobs.set(job.id, { ...this.jobs.get(job.id), ...job });
    this.render();
  }

  async create() {
    const prompt = this.prompt.value.trim();
    this.error.textContent = '';
    if (!prompt) {
      this.error.textContent = 'Describe the image you want first.';
      this.prompt.focus();
      return;
    }
    const resolution = Number(this.form.querySelector('input[name=resolution]:checked').value);
    const c = this.app.credits;
    if (c && c.available < this.app.imageCost) {
      this.error.textContent = `Not enough credits: an image costs ${creditsText(this.app.imageCost)} and you have ${fmtNumber(c.available)} available.`;
      return;
    }
    const key = resolution + '\u0000' + prompt;
    if (!this.request || this.request.key !== key) this.request = { key, clientRequestId: randomId() };
    this.submit.disabled = true;
    try {
      const job = await this.app.api.post('/v1/images', { prompt, resolution, clientRequestId: this.request.clientRequestId });
      this.request = null;
      if (this.disposed) return;
      this.prompt.value = '';
      this.upsert(job);
      this.renderCost();
    } catch (err) {
      if (err instanceof ApiError && err.status !== 0) this.request = null;
      if (err instanceof ApiError && err.code === 'rate_limited') {
        this.error.textContent = 'You already have several images in progress. Wait for one to finish, then try again.';
      } else {
        const cc = this.app.credits;
        this.error.textContent = friendlyError(err, { price: this.app.imageCost, ...(cc ? { available: cc.available } : {}) });
      }
    } finally {
      this.submit.disabled = false;
    }
  }

  render() {
    const list = [...this.jobs.values()].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || (a.id < b.id ? 1 : -1));
    let prev = null;
    const seen = new Set();
    for (const job of list) {
      seen.add(job.id);
      let li = this.cards.get(job.id);
      if (!li) {
        li = h('li', { class: 'image-card', dataset: { id: job.id } });
        this.cards.set(job.id, li);
      }
      this.fill(li, job);
      const want = prev ? prev.nextSibling : this.gallery.firstChild;
      if (want !== li) this.gallery.insertBefore(li, want);
      prev = li;
    }
    for (const [id, li] of this.cards) {
      if (!seen.has(id)) {
        li.remove();
        this.cards.delete(id);
      }
    }
    this.empty.hidden = !this.loaded || list.length > 0;
    this.more.hidden = !this.next;
  }

  fill(li, job) {
    const src = job.status === 'completed' && job.image ? imageSrc(job.image.url) : null;
    const key = [job.status, src, job.error && job.error.message].join('\u0000');
    if (li.dataset.key === key) return;
    li.dataset.key = key;
    li.dataset.status = job.status;
    let visual;
    if (src) {
      const img = h('img', { src, alt: job.prompt, loading: 'lazy', decoding: 'async', width: job.image.width, height: job.image.height });
      this.refreshOnError(img, job.id);
      visual = h('button', { type: 'button', class: 'thumb', attrs: { 'aria-label': 'View full size: ' + job.prompt }, on: { click: () => this.open(job.id) } }, img);
    } else {
      visual = h('div', { class: 'placeholder ' + job.status, attrs: { role: 'status' } },
        running(job.status) ? h('span', { class: 'spinner', attrs: { 'aria-hidden': 'true' } }) : null,
        h('span', { class: 'placeholder-text' }, STATUS_TEXT[job.status] || job.status));
    }
    const meta = [`${job.resolution} × ${job.resolution}`];
    if (job.status === 'completed') meta.push(relativeTime(job.completedAt || job.createdAt));
    else if (job.status !== 'failed') meta.push(STATUS_TEXT[job.status] || job.status);
    li.replaceChildren(
      visual,
      h('div', { class: 'card-text' },
        h('p', { class: 'card-prompt', title: job.prompt }, job.prompt),
        h('p', { class: 'card-meta' }, meta.join(' · ')),
        job.status === 'failed'
          ? h('p', { class: 'message-error' }, (job.error && job.error.message ? job.error.message : 'The image could not be made.') + ' Credits were released.')
          : null));
  }

  // refreshOnError fetches a fresh signed URL when an image's has expired.
  refreshOnError(img, id) {
    let retried = false;
    img.addEventListener('error', async () => {
      if (retried || this.disposed) return;
      retried = true;
      try {
        const job = await this.app.api.get('/v1/images/' + encodeURIComponent(id));
        this.jobs.set(id, job);
        const src = job.image ? imageSrc(job.image.url) : null;
        if (src) img.src = src;
        if (this.lightbox.open && this.lightbox.dataset.id === id && src) {
          this.lightboxImg.src = src;
          this.lightboxOpen.href = src;
        }
      } catch { /* leave the broken image */ }
    });
  }

  open(id) {
    const job = this.jobs.get(id);
    const src = job && job.image ? imageSrc(job.image.url) : null;
    if (!src) return;
    this.lightbox.dataset.id = id;
    this.lightboxImg.replaceWith(this.lightboxImg = h('img', { src, alt: job.prompt, width: job.image.width, height: job.image.height }));
    this.refreshOnError(this.lightboxImg, id);
    this.lightboxOpen.href = src;
    this.lightboxCaption.replaceChildren(
      h('span', null, job.prompt),
      h('span', { class: 'muted' }, ` · ${job.image.width} × ${job.image.height}`));
    this.lightbox.showModal();
  }
}

function running(status) {
  return status === 'pending' || status === 'processing';
}
