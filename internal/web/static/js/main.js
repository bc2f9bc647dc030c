// Luna's web app: the shell (top bar with the live credit balance, the
// conversation list, the main pane), the session, the live event stream and
// the hash router. It talks only to Luna's public API, like the iOS app.
//
// Layout: on wide screens the conversation list is a sidebar beside the main
// pane; on phones they are separate screens (body[data-pane] says which is
// shown) and the main pane has a back button.

import { h, icon, fmtNumber, credits as creditsText } from './dom.js';
import { Api, ApiError, query, friendlyError } from './api.js';
import { LiveStream } from './sse.js';
import { renderAuth, renderUnreachable } from './auth.js';
import { ConversationList } from './conversations.js';
import { ChatView } from './chat.js';
import { NewChatView } from './newchat.js';
import { ImagesView } from './images.js';
import { confirmAction } from './widgets.js';
import { UsageView } from './usage.js';

const TOKEN_KEY = 'luna.token';
const root = document.getElementById('root');

// app is the state shared by the views.
const app = {
  token: localStorage.getItem(TOKEN_KEY) || '',
  user: null,
  credits: null, // {balance, reserved, available}
  imageCost: 50, // updated from the jobs the API returns
  replyIdleTimeoutMs: 90000, // the server's limit for a silent reply (GET /v1/auth/config)
  events: new EventTarget(), // 'credits', 'conversation', 'conversation-deleted', 'message', 'image', 'resync'
  modelsPromise: null,
  pendingFirstMessage: null, // {conversationId, text} from the new-chat screen
  api: null,
  list: null,
  view: null,
  stream: null,
};

app.api = new Api({
  getToken: () => app.token,
  onUnauthorized: () => signedOut('Your session has ended. Sign in again.'),
});

// emit sends an app event to the views.
app.emit = (type, detail) => app.events.dispatchEvent(new CustomEvent(type, { detail }));

// on subscribes to an app event and returns the unsubscribe function.
app.on = (type, fn) => {
  const target = app.events;
  const listener = (e) => fn(e.detail);
  target.addEventListener(type, listener);
  return () => target.removeEventListener(type, listener);
};

app.models = () => {
  if (!app.modelsPromise) {
    app.modelsPromise = app.api.get('/v1/models').then((r) => r.items, (err) => {
      app.modelsPromise = null;
      throw err;
    });
  }
  return app.modelsPromise;
};

app.navigate = (hash) => {
  if (location.hash === hash) route();
  else location.hash = hash;
};

app.setCredits = (c) => {
  if (!c || typeof c.available !== 'number') return;
  app.credits = c;
  renderCredits();
  app.emit('credits', c);
};

// deleteConversation asks, then deletes a conversation; every view learns
// it from the 'conversation-deleted' event (this device's at once, the
// others' through /v1/events).
app.deleteConversation = async (c) => {
  const title = (c && c.title) || 'New conversation';
  const ok = await confirmAction({
    id: 'delete-dialog',
    title: `Delete “${title}”?`,
    text: 'Its messages are deleted for good. A reply still being written is stopped first. Your usage history and the images made in it are kept.',
    confirmLabel: 'Delete',
    errorText: (err) => friendlyError(err),
    action: async () => {
      try {
        await app.api.del('/v1/conversations/' + encodeURIComponent(c.id));
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 404) throw err; // already gone: fine
      }
      app.emit('conversation-deleted', { id: c.id });
    },
  });
  if (ok && location.hash === '#/c/' + encodeURIComponent(c.id)) app.navigate('#/');
  if (ok) (document.getElementById('new-chat') || mainEl)?.focus({ preventScroll: true });
  return ok;
};

app.noteImageCost = (cost) => {
  if (typeof cost === 'number' && cost > 0) app.imageCost = cost;
};

// ---- boot and session ----

async function boot() {
  // The image price, before any image exists (best effort).
  app.api.get('/v1/auth/config', { auth: false }).then((c) => {
    app.noteImageCost(c && c.imageCost);
    if (c && c.replyIdleTimeoutMs > 0) app.replyIdleTimeoutMs = c.replyIdleTimeoutMs;
  }, () => {});
  if (!app.token) {
    showAuth();
    return;
  }
  try {
    app.user = await app.api.get('/v1/me');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // signedOut already showed the sign-in screen
    renderUnreachable(root, boot);
    return;
  }
  showApp();
}

function showAuth(notice) {
  document.body.dataset.screen = 'auth';
  renderAuth(root, {
    api: app.api,
    notice,
    onSignedIn: (session) => {
      app.token = session.token;
      localStorage.setItem(TOKEN_KEY, session.token);
      app.user = session.user;
      if (location.hash) history.replaceState(null, '', location.pathname);
      showApp();
    },
  });
}

// signedOut forgets the session and everything shown for it.
function signedOut(notice) {
  if (!app.token && document.body.dataset.screen === 'auth') return;
  app.token = '';
  localStorage.removeItem(TOKEN_KEY);
  teardown();
  showAuth(notice);
}

async function signOut() {
  try {
    await app.api.post('/v1/auth/logout', undefined, { auth: false });
  } catch { /* the token is forgotten either way */ }
  signedOut();
}

function teardown() {
  if (app.stream) app.stream.close();
  app.stream = null;
  if (app.view) app.view.dispose();
  app.view = null;
  if (app.list) app.list.dispose();
  app.list = null;
  if (account) account.dispose();
  account = null;
  app.user = null;
  app.credits = null;
  app.modelsPromise = null;
  app.pendingFirstMessage = null;
  app.events = new EventTarget();
  window.removeEventListener('hashchange', route);
}

// ---- the shell ----

let creditsEl, creditsAmount, creditsHeld, backButton, mainEl, connectionEl, account;

function showApp() {
  document.body.dataset.screen = 'app';
  creditsAmount = h('span', { class: 'credits-amount' }, '…');
  creditsHeld = h('span', { class: 'credits-held', hidden: true });
  // The balance opens the usage history.
  creditsEl = h('a', { id: 'credits', class: 'credits', href: '#/usage' },
    icon('coin'), creditsAmount, h('span', { class: 'credits-unit' }, ' credits'), creditsHeld,
    h('span', { class: 'sr-only' }, ', usage history'));
  backButton = h('a', { id: 'back', class: 'icon-button back-button', href: '#/', attrs: { 'aria-label': 'Back to conversations' } }, icon('back'));
  // The whole shell is the main landmark: on phones the list and the
  // pane are separate screens, and each must be inside it.
  mainEl = h('div', { id: 'main', class: 'main', tabIndex: -1 });
  connectionEl = h('div', { id: 'connection', class: 'connection', hidden: true, attrs: { role: 'status' } }, 'Reconnecting to Luna…');
  app.list = new ConversationList(app);
  account = new AccountMenu(app, signOut);

  root.replaceChildren(
    h('header', { class: 'topbar' },
      backButton,
      h('a', { class: 'brand', href: '#/', attrs: { 'aria-label': 'Luna, home' } }, h('span', { class: 'logo', attrs: { 'aria-hidden': 'true' } }), h('span', { class: 'brand-name' }, 'Luna')),
      h('span', { class: 'spacer' }),
      creditsEl,
      account.el,
    ),
    connectionEl,
    h('main', { class: 'shell' },
      h('nav', { class: 'sidebar', attrs: { 'aria-label': 'Conversations' } },
        h('div', { class: 'sidebar-actions' },
          h('a', { id: 'new-chat', class: 'button primary', href: '#/new' }, icon('plus'), 'New chat'),
          h('a', { id: 'open-images', class: 'button', href: '#/images' }, icon('image'), 'Images'),
        ),
        app.list.el,
        h('p', { class: 'sidebar-user' }, app.user ? app.user.email : ''),
      ),
      mainEl,
    ),
  );
  if (app.user) app.setCredits(app.user.credits);
  startEvents();
  app.list.load();
  window.addEventListener('hashchange', route);
  route();
}

// AccountMenu is the account button of the top bar and the menu it opens:
// who is signed in, their credits, the usage history, and sign-out. It is
// a disclosure (a button that shows a panel): Escape or a click elsewhere
// closes it.
class AccountMenu {
  constructor(app, onSignOut) {
    this.app = app;
    const email = app.user ? app.user.email : '';
    this.button = h('button', { id: 'account-button', type: 'button', class: 'icon-button account-button',
      attrs: { 'aria-expanded': 'false', 'aria-controls': 'account-menu', 'aria-label': 'Account' + (email ? ` (${email})` : '') },
      on: { click: () => this.toggle() } },
    h('span', { class: 'avatar', attrs: { 'aria-hidden': 'true' } }, (email || '?').slice(0, 1).toUpperCase()));
    this.credits = h('p', { class: 'account-credits' });
    this.panel = h('div', { id: 'account-menu', class: 'account-menu', hidden: true },
      h('p', { class: 'account-label' }, 'Signed in as'),
      h('p', { id: 'account-email', class: 'account-email' }, email),
      this.credits,
      h('a', { id: 'account-usage', class: 'button ghost wide', href: '#/usage', on: { click: () => this.close() } }, icon('coin'), 'Usage history'),
      h('button', { id: 'signout', type: 'button', class: 'button ghost wide', on: { click: () => { this.close(); onSignOut(); } } }, icon('logout'), 'Sign out'),
    );
    this.el = h('div', { class: 'account' }, this.button, this.panel);
    this.onDocClick = (e) => { if (!this.el.contains(e.target)) this.close(); };
    this.onKey = (e) => {
      if (e.key === 'Escape' && !this.panel.hidden) {
        this.close();
        this.button.focus();
      }
    };
    document.addEventListener('click', this.onDocClick);
    document.addEventListener('keydown', this.onKey);
    app.on('credits', () => this.render());
    this.render();
  }

  render() {
    const c = this.app.credits;
    this.credits.textContent = c ? `${creditsText(c.available)} available` + (c.reserved > 0 ? `, ${fmtNumber(c.reserved)} held` : '') : '';
  }

  toggle() {
    if (this.panel.hidden) this.open();
    else this.close();
  }

  open() {
    this.render();
    this.panel.hidden = false;
    this.button.setAttribute('aria-expanded', 'true');
  }

  close() {
    this.panel.hidden = true;
    this.button.setAttribute('aria-expanded', 'false');
  }

  dispose() {
    document.removeEventListener('click', this.onDocClick);
    document.removeEventListener('keydown', this.onKey);
  }
}

function renderCredits() {
  if (!creditsEl) return;
  const c = app.credits;
  creditsAmount.textContent = fmtNumber(c.available);
  creditsEl.dataset.available = String(c.available);
  creditsEl.dataset.balance = String(c.balance);
  creditsEl.dataset.reserved = String(c.reserved);
  creditsHeld.hidden = c.reserved <= 0;
  creditsHeld.textContent = c.reserved > 0 ? ` (${fmtNumber(c.reserved)} held)` : '';
  creditsEl.title = `${creditsText(c.available)} available. Balance ${fmtNumber(c.balance)}` +
    (c.reserved > 0 ? `, of which ${fmtNumber(c.reserved)} held for replies and images in progress.` : '.') + ' Open the usage history.';
  creditsEl.classList.toggle('low', c.available < 50);
  creditsEl.classList.remove('changed');
  void creditsEl.offsetWidth; // restart the animation
  creditsEl.classList.add('changed');
}

// ---- live events ----

function startEvents() {
  let opened = 0;
  app.stream = new LiveStream('/v1/events', {
    getToken: () => app.token,
    resume: false, // /v1/events has no replay: reload lists after a reconnect instead
    onOpen: () => {
      connectionEl.hidden = true;
      if (opened++ > 0) app.emit('resync'); // events may have been missed while away
    },
    onState: (s) => {
      if (s === 'retrying') connectionEl.hidden = false;
    },
    onEvent: (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      switch (ev.type) {
        case 'credits.updated':
          app.setCredits(data);
          break;
        case 'conversation.created':
        case 'conversation.updated':
          app.emit('conversation', data);
          break;
        case 'conversation.deleted':
          app.emit('conversation-deleted', data);
          break;
        case 'message.created':
        case 'message.updated':
          app.emit('message', { kind: ev.type.slice('message.'.length), message: data });
          break;
        case 'image.updated':
          app.noteImageCost(data.cost);
          app.emit('image', data);
          break;
        case 'resync':
          // Luna dropped events for this client: reconnect, then reload
          // (onOpen emits 'resync' to the views once connected again).
          app.stream.restart(false);
          break;
        default:
          break;
      }
    },
    onFatal: (err) => {
      if (err.status === 401) signedOut('Your session has ended. Sign in again.');
      else connectionEl.hidden = false;
    },
  }).start();
}

// ---- routing ----

function route() {
  if (!mainEl) return;
  if (app.view) app.view.dispose();
  app.view = null;
  const hash = location.hash;
  let m, pane = 'main';
  if ((m = /^#\/c\/([^/]+)$/.exec(hash))) {
    app.view = new ChatView(app, decodeURIComponent(m[1]));
  } else if (hash === '#/new') {
    app.view = new NewChatView(app);
  } else if (hash === '#/images') {
    app.view = new ImagesView(app);
  } else if (hash === '#/usage') {
    app.view = new UsageView(app);
  } else {
    // Home: the conversation list on phones, a new chat beside it on
    // wide screens.
    pane = 'list';
    app.view = new NewChatView(app);
  }
  document.body.dataset.pane = pane;
  mainEl.replaceChildren(app.view.el);
  app.list.select(app.view.conversationId || null);
  const home = pane === 'list';
  setCurrent(document.getElementById('new-chat'), hash === '#/new' || (home && !phoneLayout.matches));
  setCurrent(document.getElementById('open-images'), hash === '#/images');
  setCurrent(creditsEl, hash === '#/usage');
  // One level-one heading per screen: the view's title, or, at home (where
  // phones show the list), the list's.
  app.list.setHeadingLevel(home && phoneLayout.matches ? 1 : 2);
  // Focus the view's main field, but not on touch screens, where that
  // would pop up the keyboard over what the person came to read.
  if (app.view.focus && !matchMedia('(pointer: coarse)').matches) app.view.focus();
}

function setCurrent(el, current) {
  if (current) el.setAttribute('aria-current', 'page');
  else el.removeAttribute('aria-current');
}

// phoneLayout matches when the list and the main pane are separate screens
// (app.css); at home the list's heading is then the screen's.
const phoneLayout = matchMedia('(max-width: 760px)');
phoneLayout.addEventListener('change', () => { if (app.list && document.body.dataset.pane === 'list') route(); });

// Export for the views that need a page of a list.
app.query = query;

boot();
