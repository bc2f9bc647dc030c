// The sign-in / sign-up screen (built-in accounts). In Clerk mode the API
// has no login route (it answers 404): sign-in then happens in the app.

import { h, icon } from './dom.js';
import { ApiError, friendlyError } from './api.js';

// renderAuth shows the screen in root. onSignedIn(session) is called with
// the API's session ({token, user}) after a successful sign-in or sign-up.
export function renderAuth(root, { api, onSignedIn, notice }) {
  let mode = 'signin';

  const email = h('input', { id: 'auth-email', type: 'email', name: 'email', autocomplete: 'email', required: true, maxLength: 254, attrs: { inputmode: 'email' } });
  const password = h('input', { id: 'auth-password', type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const name = h('input', { id: 'auth-name', type: 'text', name: 'name', autocomplete: 'name', maxLength: 100 });
  const invite = h('input', { id: 'auth-invite', type: 'text', name: 'inviteCode', autocomplete: 'off', spellcheck: false });
  const error = h('p', { id: 'auth-error', class: 'form-error', attrs: { role: 'alert' } });
  const submit = h('button', { id: 'auth-submit', type: 'submit', class: 'button primary wide' }, 'Sign in');
  const passwordHint = h('p', { class: 'field-hint', id: 'auth-password-hint' }, 'At least 8 characters.');
  const signupOnly = [
    h('div', { class: 'field' }, h('label', { htmlFor: 'auth-name' }, 'Name ', h('span', { class: 'optional' }, '(optional)')), name),
    h('div', { class: 'field' }, h('label', { htmlFor: 'auth-invite' }, 'Invite code ', h('span', { class: 'optional' }, '(if sign-up is by invitation)')), invite),
  ];
  // The two modes are ARIA tabs over one panel (the form): arrow keys,
  // Home and End move between them, and only the selected tab is in the
  // Tab order.
  const tabSignin = h('button', { id: 'tab-signin', type: 'button', class: 'tab', attrs: { role: 'tab', 'aria-controls': 'auth-panel' }, on: { click: () => setMode('signin') } }, 'Sign in');
  const tabSignup = h('button', { id: 'tab-signup', type: 'button', class: 'tab', attrs: { role: 'tab', 'aria-controls': 'auth-panel' }, on: { click: () => setMode('signup') } }, 'Create account');

  const form = h('form', { id: 'auth-form', class: 'auth-form', on: { submit: onSubmit } },
    notice ? h('p', { class: 'notice' }, notice) : null,
    h('div', { class: 'field' }, h('label', { htmlFor: 'auth-email' }, 'Email'), email),
    h('div', { class: 'field' }, h('label', { htmlFor: 'auth-password' }, 'Password'), password, passwordHint),
    signupOnly,
    error,
    submit,
  );
  const clerk = h('div', { id: 'clerk-notice', class: 'clerk-notice', hidden: true, attrs: { role: 'status' } },
    h('h2', null, 'Sign-in happens in the Luna app'),
    h('p', null, 'This Luna server uses Clerk accounts. Sign in with the Luna app on your phone; the web app only works with Luna\u2019s built-in accounts.'),
  );
  const panel = h('div', { id: 'auth-panel', attrs: { role: 'tabpanel', 'aria-labelledby': 'tab-signin' } }, form);
  const tabs = h('div', { class: 'tabs', attrs: { role: 'tablist', 'aria-label': 'Account' } }, tabSignin, tabSignup);
  tabs.addEventListener('keydown', (e) => {
    const list = [tabSignin, tabSignup].filter((t) => !t.hidden);
    const at = list.indexOf(document.activeElement);
    if (at < 0) return;
    let to;
    switch (e.key) {
      case 'ArrowRight': to = list[(at + 1) % list.length]; break;
      case 'ArrowLeft': to = list[(at - 1 + list.length) % list.length]; break;
      case 'Home': to = list[0]; break;
      case 'End': to = list[list.length - 1]; break;
      default: return;
    }
    e.preventDefault();
    setMode(to === tabSignup ? 'signup' : 'signin');
    to.focus();
  });

  root.replaceChildren(h('main', { class: 'auth-screen' },
    h('div', { class: 'auth-card' },
      h('div', { class: 'auth-brand' }, h('span', { class: 'logo', attrs: { 'aria-hidden': 'true' } }), h('h1', null, 'Luna')),
      h('p', { class: 'tagline' }, 'Private, uncensored chat with open models, and images on demand.'),
      tabs, panel, clerk,
    ),
  ));
  setMode('signin');
  email.focus();
  applyServerConfig();

  // applyServerConfig asks the server how sign-in works here, so the form
  // can say so before the first attempt (Clerk, invite-only, closed).
  async function applyServerConfig() {
    let cfg;
    try {
      cfg = await api.request('GET', '/v1/auth/config', undefined, { auth: false });
    } catch {
      return; // an older server or no network: the form still works
    }
    if (!cfg) return;
    if (cfg.mode === 'clerk') {
      showClerk();
      return;
    }
    if (cfg.signupMode === 'invite') {
      const hintText = invite.previousSibling?.querySelector?.('.optional');
      if (hintText) hintText.textContent = '(required: sign-up is by invitation)';
    } else if (cfg.signupMode === 'closed') {
      tabSignup.hidden = true;
    }
  }

  function setMode(m) {
    mode = m;
    const up = m === 'signup';
    tabSignin.setAttribute('aria-selected', String(!up));
    tabSignup.setAttribute('aria-selected', String(up));
    tabSignin.tabIndex = up ? -1 : 0;
    tabSignup.tabIndex = up ? 0 : -1;
    panel.setAttribute('aria-labelledby', up ? 'tab-signup' : 'tab-signin');
    for (const f of signupOnly) f.hidden = !up;
    passwordHint.hidden = !up;
    password.autocomplete = up ? 'new-password' : 'current-password';
    password.minLength = up ? 8 : 0;
    submit.textContent = up ? 'Create account' : 'Sign in';
    error.textContent = '';
  }

  function showClerk() {
    form.hidden = true;
    panel.hidden = true;
    tabs.hidden = true;
    clerk.hidden = false;
  }

  async function onSubmit(e) {
    e.preventDefault();
    error.textContent = '';
    if (!form.reportValidity()) return;
    submit.disabled = true;
    const body = { email: email.value.trim(), password: password.value };
    if (mode === 'signup') {
      if (name.value.trim()) body.name = name.value.trim();
      if (invite.value.trim()) body.inviteCode = invite.value.trim();
    }
    try {
      const session = await api.post(mode === 'signup' ? '/v1/auth/signup' : '/v1/auth/login', body, { auth: false });
      onSignedIn(session);
    } catch (err) {
      submit.disabled = false;
      if (!(err instanceof ApiError)) throw err;
      switch (err.code) {
        case 'not_found':
          showClerk();
          return;
        case 'unauthorized':
          error.textContent = 'Wrong email or password.';
          password.select();
          return;
        case 'invite_required':
          error.textContent = 'Sign-up on this server is by invitation: enter a valid invite code.';
          invite.focus();
          return;
        case 'signup_closed':
          error.textContent = 'This server does not accept new accounts. Ask its operator for one.';
          return;
        case 'email_taken':
          error.replaceChildren('An account with this email already exists. ',
            h('button', { type: 'button', class: 'link-button', on: { click: () => setMode('signin') } }, 'Sign in instead'));
          return;
        default:
          error.textContent = friendlyError(err);
      }
    }
  }
}

// renderUnreachable shows that Luna could not be reached, with a retry.
export function renderUnreachable(root, retry) {
  root.replaceChildren(h('main', { class: 'auth-screen' },
    h('div', { class: 'auth-card' },
      h('div', { class: 'auth-brand' }, h('span', { class: 'logo', attrs: { 'aria-hidden': 'true' } }), h('h1', null, 'Luna')),
      h('p', { class: 'form-error', attrs: { role: 'alert' } }, 'Luna could not be reached. Check your connection.'),
      h('button', { type: 'button', class: 'button primary wide', on: { click: retry } }, icon('send'), 'Try again'),
    ),
  ));
}
