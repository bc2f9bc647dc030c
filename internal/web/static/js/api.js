// The API client: JSON over fetch with the bearer token, errors turned into
// ApiError with the API's stable codes, and readable messages for people.

import { credits } from './dom.js';

// ApiError is a failed API call: status 0 means the server could not be
// reached.
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = 0, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.details = details; // the error object's other fields, e.g. creditsNeeded
  }
}

// errorFromResponse reads the API's error shape from a failed response.
export async function errorFromResponse(res) {
  let code = 'http_' + res.status;
  let message = `The server answered ${res.status}.`;
  let details = {};
  try {
    const body = await res.json();
    if (body && body.error && typeof body.error.code === 'string') {
      details = body.error;
      code = body.error.code;
      if (typeof body.error.message === 'string' && body.error.message) message = body.error.message;
    }
  } catch { /* not JSON: keep the generic message */ }
  const retryAfter = Number(res.headers.get('Retry-After')) || 0;
  return new ApiError(res.status, code, message, retryAfter, details);
}

export const networkError = () => new ApiError(0, 'network', 'Luna could not be reached. Check your connection and try again.');

// Api calls Luna's HTTP API.
export class Api {
  // getToken returns the bearer token (or ''); onUnauthorized is called when
  // the API says the token is no longer valid.
  constructor({ getToken, onUnauthorized }) {
    this.getToken = getToken;
    this.onUnauthorized = onUnauthorized;
  }

  headers(extra) {
    const h = { Accept: 'application/json', ...extra };
    const token = this.getToken();
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }

  async request(method, path, body, { signal, auth = true } = {}) {
    const init = { method, headers: this.headers(), cache: 'no-store', signal };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw networkError();
    }
    if (!res.ok) {
      const err = await errorFromResponse(res);
      if (res.status === 401 && auth) this.onUnauthorized(err);
      throw err;
    }
    if (res.status === 204) return null;
    return res.json();
  }

  get(path, opts) { return this.request('GET', path, undefined, opts); }
  post(path, body, opts) { return this.request('POST', path, body ?? {}, opts); }
  patch(path, body, opts) { return this.request('PATCH', path, body, opts); }
  del(path, opts) { return this.request('DELETE', path, undefined, opts); }
}

// query builds a query string from the defined values of params.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? '?' + s : '';
}

// friendlyError turns an error into words for people. ctx may carry the
// available credits and the price of what was attempted.
export function friendlyError(err, ctx = {}) {
  if (!(err instanceof ApiError)) return 'Something went wrong in the page. Reload it and try again.';
  switch (err.code) {
    case 'network':
      return err.message;
    case 'insufficient_credits': {
      const d = err.details || {};
      if (typeof d.creditsNeeded === 'number' && typeof d.creditsAvailable === 'number') {
        return `You don\u2019t have enough credits: this needs at least ${credits(d.creditsNeeded)} and you have ${credits(d.creditsAvailable)} available.`;
      }
      let s = 'You don\u2019t have enough credits for this.';
      if (ctx.price !== undefined) s += ` It costs ${credits(ctx.price)}`;
      if (ctx.available !== undefined) s += (ctx.price !== undefined ? ' and you have ' : ' You have ') + credits(ctx.available) + ' available';
      if (ctx.price !== undefined || ctx.available !== undefined) s += '.';
      return s;
    }
    case 'model_unavailable':
      return 'This model is not available any more. Start a new conversation with another model.';
    case 'upstream_unavailable':
      return 'The model server is busy or unreachable right now. Try again in a moment.' + detail(err);
    case 'generation_in_progress':
      return 'A reply is still being written in this conversation. Wait for it to finish, or stop it.';
    case 'rate_limited':
      return 'Too many requests at once.' + (err.retryAfter ? ` Try again in ${err.retryAfter} seconds.` : ' Try again in a moment.');
    case 'unavailable':
      return 'Luna is restarting. Try again in a moment.';
    case 'internal':
      return 'Luna had an internal problem. Try again; if it keeps happening, tell the operator.';
    case 'payload_too_large':
      return 'That is too long to send.';
    default:
      return err.message; // the API's messages are written for people
  }
}

// sentence ends s with a full stop unless it has its own punctuation.
function sentence(s) {
  s = s.trim();
  return /[.!?…)]$/.test(s) ? s : s + '.';
}

function detail(err) {
  const m = (err.message || '').trim();
  return m && !/^the server answered/i.test(m) ? ` (${m})` : '';
}

// replyErrorText describes why a reply failed, from the error its stream
// or message carries.
export function replyErrorText(status, error) {
  const code = error && error.code;
  const msg = (error && error.message) || '';
  const released = ' Credits for it were released.';
  if (status === 'interrupted') return sentence(msg || 'The reply was interrupted.') + released;
  switch (code) {
    case 'upstream_unavailable':
      return sentence(msg || 'The model failed to answer.') + released;
    case 'insufficient_credits':
      return 'Not enough credits to finish this reply.';
    case 'model_unavailable':
      return 'This model is not available any more.';
    case 'invalid_request':
      return sentence(msg || 'The model refused the request.') + released;
    default:
      return sentence(msg || 'The reply failed.') + released;
  }
}
