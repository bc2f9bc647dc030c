// Live data for the signed-in user: the balance, the conversation list and
// the gallery, kept current by GET /v1/events; screens subscribe to message
// changes through onMessage.
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';

import { describeError } from '@/api/errors';
import type { StreamState } from '@/api/sse';
import type { Conversation, Credits, ImageJob, Message, Model, UserEvent } from '@/api/types';
import { useSession } from '@/auth/session';

import { watchLifecycle } from './lifecycle';

type MessageListener = (m: Message) => void;

interface LiveValue {
  credits: Credits | null;
  conversations: Conversation[];
  conversationsError: string | null;
  images: ImageJob[];
  models: Model[];
  // deleted holds the ids of conversations deleted while the app runs
  // (here or on another device).
  deleted: ReadonlySet<string>;
  connection: StreamState;
  // resumed increases each time the app returns to the foreground or the
  // network changes, so screens can reload.
  resumed: number;
  reload: () => void;
  upsertConversation: (c: Conversation) => void;
  upsertImage: (j: ImageJob) => void;
  onMessage: (l: MessageListener) => () => void;
}

const LiveContext = createContext<LiveValue | null>(null);

const byUpdatedDesc = (a: Conversation, b: Conversation) => b.updatedAt.localeCompare(a.updatedAt);
const byCreatedDesc = (a: ImageJob, b: ImageJob) => b.createdAt.localeCompare(a.createdAt);

function upsert<T extends { id: string }>(list: T[], item: T, sort: (a: T, b: T) => number): T[] {
  const next = list.filter((x) => x.id !== item.id);
  next.push(item);
  return next.sort(sort);
}

export function LiveProvider({ children }: { children: ReactNode }) {
  const { client } = useSession();
  const [credits, setCredits] = useState<Credits | null>(null);
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [conversationsError, setConversationsError] = useState<string | null>(null);
  const [images, setImages] = useState<ImageJob[]>([]);
  const [models, setModels] = useState<Model[]>([]);
  const [deleted, setDeleted] = useState<ReadonlySet<string>>(new Set());
  const [connection, setConnection] = useState<StreamState>('connecting');
  const [resumed, setResumed] = useState(0);
  const listeners = useRef(new Set<MessageListener>());

  const reload = useCallback(() => {
    client
      .conversations()
      .then((page) => {
        setConversations(page.items.slice().sort(byUpdatedDesc));
        setConversationsError(null);
      })
      .catch((err) => setConversationsError(describeError(err)));
    client
      .images()
      .then((page) => setImages(page.items.slice().sort(byCreatedDesc)))
      .catch(() => {});
    client
      .me()
      .then((me) => setCredits(me.credits))
      .catch(() => {});
    client
      .models()
      .then(setModels)
      .catch(() => {});
  }, [client]);

  useEffect(() => {
    reload();
    const stream = client.events({
      onState: setConnection,
      onOpen: (reconnect) => {
        if (reconnect) reload(); // events missed while away
      },
      onEvent: (ev: UserEvent) => {
        switch (ev.event) {
          case 'credits.updated':
            setCredits(ev.data);
            break;
          case 'conversation.created':
          case 'conversation.updated':
            setConversations((list) => upsert(list, ev.data, byUpdatedDesc));
            break;
          case 'conversation.deleted': {
            const id = ev.data.id;
            setConversations((list) => list.filter((c) => c.id !== id));
            setDeleted((s) => new Set(s).add(id));
            break;
          }
          case 'image.updated':
            setImages((list) => upsert(list, ev.data, byCreatedDesc));
            break;
          case 'message.created':
          case 'message.updated':
            for (const l of listeners.current) l(ev.data);
            break;
          case 'resync':
            reload();
            stream.reconnect();
            break;
        }
      },
    });
    const stop = watchLifecycle(() => {
      setResumed((n) => n + 1);
      reload();
    });
    return () => {
      stop();
      stream.close();
    };
  }, [client, reload]);

  const value = useMemo<LiveValue>(
    () => ({
      credits,
      conversations,
      conversationsError,
      images,
      models,
      deleted,
      connection,
      resumed,
      reload,
      upsertConversation: (c) => setConversations((list) => upsert(list, c, byUpdatedDesc)),
      upsertImage: (j) => setImages((list) => upsert(list, j, byCreatedDesc)),
      onMessage: (l) => {
        listeners.current.add(l);
        return () => listeners.current.delete(l);
      },
    }),
    [credits, conversations, conversationsError, images, models, deleted, connection, resumed, reload],
  );
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLive(): LiveValue {
  const v = useContext(LiveContext);
  if (!v) throw new Error('useLive outside LiveProvider');
  return v;
}
