// ApiError and readable messages for every error code the API documents.
import type { ErrorCode } from './types';

// Codes the client itself produces: the server could not be reached, or
// answered something that is not the API's error shape.
export type ClientErrorCode = 'network' | 'bad_response';

// ApiError is a failed API call. status is 0 when Luna could not be reached.
export class ApiError extends Error {
  readonly status: number;
  readonly code: ErrorCode | ClientErrorCode | string;
  readonly retryAfter: number; // seconds, from Retry-After (429); 0 if none

  constructor(status: number, code: string, message: string, retryAfter = 0) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// Titles for each code: the Record type makes the type check fail when the
// document gains a code this table does not cover.
const titles: Record<ErrorCode | ClientErrorCode, string> = {
  invalid_request: 'That request was not valid.',
  unauthorized: 'Your session has ended. Please sign in again.',
  insufficient_credits: 'Not enough credits.',
  forbidden: 'That is not allowed.',
  invite_required: 'An invite code is needed to sign up.',
  signup_closed: 'Sign-up is closed on this server.',
  not_found: 'Not found.',
  method_not_allowed: 'That is not supported.',
  conflict: 'That conflicts with something else.',
  email_taken: 'That email is already registered.',
  generation_in_progress: 'A reply is still being written in this conversation.',
  idempotency_conflict: 'That request was already sent with different content.',
  payload_too_large: 'That is too long.',
  unsupported_media_type: 'The app sent something the server does not understand.',
  rate_limited: 'Too many requests.',
  internal: 'Something went wrong on the server.',
  model_unavailable: 'The model is not available right now.',
  upstream_unavailable: 'The model is busy or unreachable right now.',
  unavailable: 'Luna is unavailable right now.',
  network: 'Luna could not be reached.',
  bad_response: 'The server sent an unexpected answer.',
};

// What to do next, when there is something useful to say.
const hints: Partial<Record<ErrorCode | ClientErrorCode, string>> = {
  insufficient_credits: 'Ask the server’s operator for more credits.',
  generation_in_progress: 'Wait for it to finish, or stop it.',
  idempotency_conflict: 'Try again; the app will send it as a new request.',
  upstream_unavailable: 'Try again in a moment.',
  model_unavailable: 'Try again later or pick another model.',
  network: 'Check your connection and try again.',
  internal: 'Try again; if it keeps happening, tell the operator.',
};

// describeError turns any error into one readable sentence or two.
export function describeError(err: unknown): string {
  if (!(err instanceof ApiError)) {
    return err instanceof Error && err.message ? err.message : 'Something went wrong.';
  }
  const code = err.code as ErrorCode | ClientErrorCode;
  const title = titles[code] ?? `The server answered ${err.status}.`;
  const parts = [title];
  // The server's message is documented as safe to show; add it when it
  // says more than the title (for a 429, Retry-After says when, exactly).
  const exactRetry = code === 'rate_limited' && err.retryAfter > 0;
  if (err.message && err.message !== title && err.status !== 0 && !exactRetry) parts.push(err.message);
  if (code === 'rate_limited' && err.retryAfter > 0) {
    parts.push(`Try again in ${err.retryAfter} second${err.retryAfter === 1 ? '' : 's'}.`);
  } else if (hints[code]) {
    parts.push(hints[code]!);
  }
  return parts.join(' ');
}

// errorFromResponse reads the API's error shape from a failed response.
export async function errorFromResponse(res: Response): Promise<ApiError> {
  let code = 'bad_response';
  let message = `The server answered ${res.status}.`;
  try {
    const body: unknown = await res.json();
    const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    if (e && typeof e.code === 'string') {
      code = e.code;
      if (typeof e.message === 'string' && e.message) message = e.message;
    }
  } catch {
    // not JSON: keep the generic message
  }
  return new ApiError(res.status, code, message, Number(res.headers.get('Retry-After')) || 0);
}

export const networkError = (): ApiError => new ApiError(0, 'network', titles.network);
