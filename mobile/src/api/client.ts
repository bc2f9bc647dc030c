// The typed Luna client: every call goes through openapi-fetch with the
// paths generated from openapi.json, so a route or shape that drifts from
// the document fails the type check. Failures become ApiError.
//
// Adding a route (e.g. regenerate/continue/edit): regenerate schema.gen.ts
// (`npm run gen:api`) and add one line below; the types follow.
import createClient, { type Middleware } from 'openapi-fetch';

import { ApiError, networkError } from './errors';
import { LiveStream, type StreamFetch, type StreamState } from './sse';
import type {
  AuthConfig,
  Conversation,
  ConversationWithMessages,
  Credits,
  ImageJob,
  ImageResolution,
  LoginRequest,
  Message,
  MessageStreamEvent,
  Model,
  paths,
  Session,
  SignupRequest,
  StreamEnd,
  User,
  UserEvent,
} from './types';

export interface LunaClientOptions {
  baseUrl: string;
  // getToken returns the bearer token: a Luna session token or, in Clerk
  // mode, a fresh Clerk session JWT.
  getToken: () => Promise<string | null>;
  // onUnauthorized runs when the API says the token is no longer valid.
  onUnauthorized?: (err: ApiError) => void;
  fetch?: typeof globalThis.fetch;
  // streamFetch must give streaming bodies (expo/fetch on iOS).
  streamFetch?: StreamFetch;
}

type Result<T> = { data?: T; error?: unknown; response: Response };

export type LunaClient = ReturnType<typeof createLunaClient>;

export function createLunaClient(opts: LunaClientOptions) {
  const baseFetch = opts.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(input, init));
  const api = createClient<paths>({
    baseUrl: opts.baseUrl,
    // Convert network failures to ApiError('network') in one place.
    fetch: async (req: Request) => {
      try {
        return await baseFetch(req);
      } catch (err) {
        if (err instanceof Error && err.name === 'AbortError') throw err;
        throw networkError();
      }
    },
  });
  const auth: Middleware = {
    async onRequest({ request }) {
      const token = await opts.getToken();
      if (token) request.headers.set('Authorization', 'Bearer ' + token);
      request.headers.set('Accept', 'application/json');
      return request;
    },
  };
  api.use(auth);

  // unwrap returns the data of a call or throws its ApiError.
  async function unwrap<T>(call: Promise<Result<T>>, { signOutOn401 = true } = {}): Promise<T> {
    const { data, error, response } = await call;
    if (response.ok) return data as T;
    const e = (error as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    const err = new ApiError(
      response.status,
      typeof e?.code === 'string' ? e.code : 'bad_response',
      typeof e?.message === 'string' && e.message ? e.message : `The server answered ${response.status}.`,
      Number(response.headers.get('Retry-After')) || 0,
    );
    if (response.status === 401 && signOutOn401) opts.onUnauthorized?.(err);
    throw err;
  }

  const streamFetch: StreamFetch = opts.streamFetch ?? ((url, init) => globalThis.fetch(url, init));

  return {
    baseUrl: opts.baseUrl,
    raw: api,

    authConfig: (): Promise<AuthConfig> => unwrap(api.GET('/v1/auth/config')),
    signup: (body: SignupRequest): Promise<Session> => unwrap(api.POST('/v1/auth/signup', { body }), { signOutOn401: false }),
    login: (body: LoginRequest): Promise<Session> => unwrap(api.POST('/v1/auth/login', { body }), { signOutOn401: false }),
    logout: (): Promise<unknown> => unwrap(api.POST('/v1/auth/logout'), { signOutOn401: false }),
    me: (): Promise<User> => unwrap(api.GET('/v1/me')),
    models: async (): Promise<Model[]> => (await unwrap(api.GET('/v1/models'))).items,

    conversations: (cursor?: string) =>
      unwrap(api.GET('/v1/conversations', { params: { query: { limit: 50, cursor } } })),
    createConversation: (modelId: string): Promise<Conversation> =>
      unwrap(api.POST('/v1/conversations', { body: { modelId } })),
    conversation: (id: string): Promise<ConversationWithMessages> =>
      unwrap(api.GET('/v1/conversations/{id}', { params: { path: { id } } })),
    renameConversation: (id: string, title: string): Promise<Conversation> =>
      unwrap(api.PATCH('/v1/conversations/{id}', { params: { path: { id } }, body: { title } })),
    messages: (id: string, cursor?: string) =>
      unwrap(api.GET('/v1/conversations/{id}/messages', { params: { path: { id }, query: { limit: 50, cursor } } })),
    sendMessage: (conversationId: string, content: string, clientMessageId?: string) =>
      unwrap(
        api.POST('/v1/conversations/{id}/messages', {
          params: { path: { id: conversationId } },
          body: { content, clientMessageId },
        }),
      ),
    message: (id: string): Promise<Message> => unwrap(api.GET('/v1/messages/{id}', { params: { path: { id } } })),
    cancelMessage: (id: string): Promise<Message> =>
      unwrap(api.POST('/v1/messages/{id}/cancel', { params: { path: { id } } })),
    // Per-message actions (versions): each answers like a send; follow
    // assistantMessage with streamMessage.
    regenerate: (id: string, clientRequestId?: string) =>
      unwrap(api.POST('/v1/messages/{id}/regenerate', { params: { path: { id } }, body: { clientRequestId } })),
    continueMessage: (id: string, clientRequestId?: string) =>
      unwrap(api.POST('/v1/messages/{id}/continue', { params: { path: { id } }, body: { clientRequestId } })),
    editMessage: (id: string, content: string, clientRequestId?: string) =>
      unwrap(api.POST('/v1/messages/{id}/edit', { params: { path: { id } }, body: { content, clientRequestId } })),
    selectVersion: (id: string): Promise<ConversationWithMessages> =>
      unwrap(api.POST('/v1/messages/{id}/select', { params: { path: { id } } })),
    deleteConversation: (id: string): Promise<unknown> =>
      unwrap(api.DELETE('/v1/conversations/{id}', { params: { path: { id } } })),
    creditEntries: (cursor?: string) =>
      unwrap(api.GET('/v1/credits/entries', { params: { query: { limit: 50, cursor } } })),

    createImage: (prompt: string, resolution: ImageResolution, clientRequestId?: string): Promise<ImageJob> =>
      unwrap(api.POST('/v1/images', { body: { prompt, resolution, clientRequestId } })),
    images: (cursor?: string) => unwrap(api.GET('/v1/images', { params: { query: { limit: 50, cursor } } })),
    image: (id: string): Promise<ImageJob> => unwrap(api.GET('/v1/images/{id}', { params: { path: { id } } })),

    // streamMessage follows one reply's text until it ends; see MessageStreamHandlers.
    streamMessage(id: string, h: MessageStreamHandlers): LiveStream {
      let text = '';
      const stream: LiveStream = new LiveStream({
        url: `${opts.baseUrl}/v1/messages/${encodeURIComponent(id)}/stream`,
        fetch: streamFetch,
        getToken: opts.getToken,
        resume: true,
        onState: h.onState,
        onFatal: (err) => {
          if (err.status === 401) opts.onUnauthorized?.(err);
          h.onFatal?.(err);
        },
        onEvent: (raw) => {
          const ev = parseEvent<MessageStreamEvent>(raw.event, raw.data, raw.id);
          if (!ev) return;
          switch (ev.event) {
            case 'snapshot':
              text = ev.data.content;
              break;
            case 'delta':
              text += ev.data.text;
              break;
            case 'done':
            case 'error':
              stream.close();
              h.onText(text);
              h.onEnd(ev.data);
              return;
            case 'deleted':
              // The conversation was deleted (here or on another device).
              stream.close();
              h.onDeleted?.();
              return;
          }
          h.onText(text);
        },
      });
      return stream.start();
    },

    // events follows the user's live changes; onOpen(reconnect) tells the
    // app to reload what it may have missed while disconnected.
    events(h: EventHandlers): LiveStream {
      return new LiveStream({
        url: `${opts.baseUrl}/v1/events`,
        fetch: streamFetch,
        getToken: opts.getToken,
        resume: false,
        onOpen: h.onOpen,
        onState: h.onState,
        onFatal: (err) => {
          if (err.status === 401) opts.onUnauthorized?.(err);
        },
        onEvent: (raw) => {
          const ev = parseEvent<UserEvent>(raw.event, raw.data);
          if (ev) h.onEvent(ev);
        },
      }).start();
    },
  };
}

export interface MessageStreamHandlers {
  // onText gets the whole text so far after every event.
  onText: (text: string) => void;
  onEnd: (end: StreamEnd) => void;
  onDeleted?: () => void;
  onState?: (state: StreamState) => void;
  onFatal?: (err: ApiError) => void;
}

export interface EventHandlers {
  onEvent: (ev: UserEvent) => void;
  onOpen?: (reconnect: boolean) => void;
  onState?: (state: StreamState) => void;
}

// parseEvent pairs an SSE event's name with its JSON data, in the shape the
// document gives (MessageStreamEvent, UserEvent). Undecodable data is
// skipped: the stream goes on.
function parseEvent<E extends { event: string }>(name: string | undefined, data: string, id?: string): E | null {
  try {
    return { event: name ?? 'message', id, data: JSON.parse(data) as unknown } as unknown as E;
  } catch {
    return null;
  }
}

export type { Credits };
