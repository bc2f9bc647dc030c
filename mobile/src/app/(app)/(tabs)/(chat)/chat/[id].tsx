// A conversation: its messages in a virtualised list (newest at the
// bottom), the reply streaming as it is written, Stop, and the composer.
import { useLocalSearchParams } from 'expo-router';
import { memo, useCallback, useEffect, useRef, useState } from 'react';
import { ActivityIndicator, FlatList, Text, View } from 'react-native';
import { StyleSheet, useUnistyles } from 'react-native-unistyles';

import type { LunaClient } from '@/api/client';
import { describeError } from '@/api/errors';
import type { LiveStream } from '@/api/sse';
import type { ConversationWithMessages, Message } from '@/api/types';
import { useSession } from '@/auth/session';
import { Composer } from '@/components/Composer';
import { modelPrice, newId } from '@/components/format';
import { KeyboardScreen } from '@/components/KeyboardScreen';
import { Markdown } from '@/components/Markdown';
import { Button, ErrorBanner } from '@/components/ui';
import { useLive } from '@/live/live';

const running = (m: Message) => m.status === 'pending' || m.status === 'streaming';

// MessageAction is one per-message action the API offers. Today: Stop a
// running reply (POST /v1/messages/{id}/cancel). Regenerate, continue,
// edit and delete join this list when their routes land.
interface MessageAction {
  key: string;
  title: string;
  kind: 'secondary' | 'danger';
  run: () => Promise<void>;
}

function messageActions(m: Message, client: LunaClient, setError: (e: string | null) => void): MessageAction[] {
  const actions: MessageAction[] = [];
  if (m.role === 'assistant' && running(m)) {
    actions.push({
      key: 'stop',
      title: 'Stop',
      kind: 'danger',
      run: async () => {
        try {
          await client.cancelMessage(m.id);
        } catch (err) {
          setError(describeError(err));
        }
      },
    });
  }
  return actions;
}

export default function Chat() {
  const params = useLocalSearchParams<{ id: string; error?: string }>();
  // One body per conversation: switching conversations starts afresh.
  return <ChatBody key={params.id} id={params.id} initialError={params.error ?? null} />;
}

function ChatBody({ id, initialError }: { id: string; initialError: string | null }) {
  const { client } = useSession();
  const { models, onMessage, resumed, conversations } = useLive();
  const { theme } = useUnistyles();
  const [conv, setConv] = useState<ConversationWithMessages | null>(null);
  const [messages, setMessages] = useState<Message[]>([]);
  const [olderCursor, setOlderCursor] = useState<string | null>(null);
  const [liveText, setLiveText] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(initialError);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const following = useRef<{ id: string; stream: LiveStream } | null>(null);

  const upsertMessage = useCallback((m: Message) => {
    setMessages((list) => {
      const i = list.findIndex((x) => x.id === m.id);
      if (i < 0) return [...list, m].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
      const next = list.slice();
      // Events leave content out: keep what we have.
      next[i] = { ...list[i]!, ...m, content: m.content ?? list[i]!.content };
      return next;
    });
  }, []);

  // Load the conversation, and again when the app comes back from the
  // background or the network changes (resumed), or on Try again (attempt).
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let cancelled = false;
    client.conversation(id).then(
      (c) => {
        if (cancelled) return;
        setConv(c);
        setMessages(c.messages.items);
        setOlderCursor(c.messages.nextCursor);
        setLoadError(null);
      },
      (err) => {
        if (!cancelled) setLoadError(describeError(err));
      },
    );
    return () => {
      cancelled = true;
    };
  }, [client, id, resumed, attempt]);

  // Messages changed elsewhere (events): a reply that finished, a send from
  // another device.
  useEffect(
    () =>
      onMessage((m) => {
        if (m.conversationId !== id) return;
        upsertMessage(m);
        if (!running(m) && m.role === 'assistant' && following.current?.id !== m.id) {
          client.message(m.id).then(upsertMessage, () => {});
        }
      }),
    [onMessage, id, client, upsertMessage],
  );

  // Follow the running reply, if any: its text streams in; at the end the
  // stored message (status, charge, error) replaces it.
  const runningId = messages.find((m) => m.role === 'assistant' && running(m))?.id ?? null;
  useEffect(() => {
    if (!runningId) return;
    if (following.current?.id === runningId) return;
    following.current?.stream.close();
    let frame: ReturnType<typeof setTimeout> | null = null;
    let latest = '';
    const stream = client.streamMessage(runningId, {
      onText: (text) => {
        latest = text;
        // At most ~30 renders a second, however fast tokens come.
        if (frame === null) {
          frame = setTimeout(() => {
            frame = null;
            setLiveText((t) => ({ ...t, [runningId]: latest }));
          }, 33);
        }
      },
      onEnd: (end) => {
        if (frame !== null) clearTimeout(frame);
        frame = null;
        setLiveText((t) => ({ ...t, [runningId]: latest }));
        if (end.error && end.status === 'error') setError(end.error.message);
        client.message(runningId).then(
          (m) => {
            upsertMessage(m);
            setLiveText((t) => {
              const { [runningId]: _, ...rest } = t;
              return rest;
            });
          },
          () => {},
        );
        if (following.current?.id === runningId) following.current = null;
      },
      onFatal: (err) => setError(describeError(err)),
    });
    following.current = { id: runningId, stream };
  }, [runningId, client, upsertMessage]);

  useEffect(
    () => () => {
      following.current?.stream.close();
      following.current = null;
    },
    [id],
  );

  const send = async (text: string): Promise<boolean> => {
    setSending(true);
    setError(null);
    try {
      const res = await client.sendMessage(id, text, newId());
      upsertMessage(res.userMessage);
      upsertMessage(res.assistantMessage);
      return true;
    } catch (err) {
      setError(describeError(err));
      return false;
    } finally {
      setSending(false);
    }
  };

  const loadOlder = async () => {
    if (!olderCursor) return;
    const cursor = olderCursor;
    setOlderCursor(null);
    try {
      const page = await client.messages(id, cursor);
      setMessages((list) => [...page.items.filter((m) => !list.some((x) => x.id === m.id)), ...list]);
      setOlderCursor(page.nextCursor);
    } catch (err) {
      setOlderCursor(cursor);
      setError(describeError(err));
    }
  };

  const model = conv ? models.find((m) => m.id === conv.modelId) : undefined;
  // The title arrives later (conversation.updated): take the live one.
  const title = conversations.find((c) => c.id === id)?.title || conv?.title;
  const reversed = messages.slice().reverse();
  const stop = runningId ? messageActions(messages.find((m) => m.id === runningId)!, client, setError).find((a) => a.key === 'stop') : undefined;

  return (
    <KeyboardScreen>
      <View style={styles.info}>
        <Text style={styles.infoTitle} numberOfLines={1} accessibilityRole="header">
          {conv ? title || 'New conversation' : ' '}
        </Text>
        <Text style={styles.infoModel} numberOfLines={1}>
          {model ? `${model.name} · ${modelPrice(model)}` : (conv?.modelId ?? '')}
        </Text>
      </View>
      {loadError ? (
        <View style={styles.center}>
          <ErrorBanner message={loadError} />
          <Button title="Try again" kind="secondary" onPress={() => setAttempt((n) => n + 1)} />
        </View>
      ) : !conv ? (
        <View style={styles.center}>
          <ActivityIndicator color={theme.colors.accent} />
        </View>
      ) : (
        <FlatList
          testID="messages"
          style={styles.list}
          contentContainerStyle={styles.listContent}
          data={reversed}
          inverted
          keyExtractor={(m) => m.id}
          renderItem={({ item }) => (
            <MessageRow
              message={item}
              text={liveText[item.id] ?? item.content ?? ''}
              actions={messageActions(item, client, setError)}
            />
          )}
          onEndReached={() => void loadOlder()}
          onEndReachedThreshold={0.3}
          keyboardShouldPersistTaps="handled"
          keyboardDismissMode="interactive"
          removeClippedSubviews
          windowSize={11}
          ListEmptyComponent={<Text style={styles.empty}>Say hello.</Text>}
        />
      )}
      <View style={styles.errorSlot}>
        <ErrorBanner message={error} />
      </View>
      <Composer onSend={send} busy={sending} generating={!!runningId} onStop={stop ? () => void stop.run() : undefined} />
    </KeyboardScreen>
  );
}

const statusNote: Partial<Record<Message['status'], string>> = {
  pending: 'Waiting for the model…',
  cancelled: 'Stopped.',
  interrupted: 'Interrupted: the server stopped before the reply was finished.',
};

const MessageRow = memo(function MessageRow({ message, text, actions }: { message: Message; text: string; actions: MessageAction[] }) {
  const mine = message.role === 'user';
  const { theme } = useUnistyles();
  return (
    <View style={[styles.row, mine ? styles.rowMine : styles.rowTheirs]} testID={`message-${message.role}`}>
      <View style={[styles.bubble, mine ? styles.bubbleMine : styles.bubbleTheirs]}>
        {mine ? (
          <Text style={styles.userText} selectable>
            {text}
          </Text>
        ) : text ? (
          <Markdown text={text} testID="assistant-text" />
        ) : running(message) ? (
          <ActivityIndicator color={theme.colors.accent} accessibilityLabel="Writing" />
        ) : null}
        {message.role === 'assistant' && message.error ? (
          <Text style={styles.failed} accessibilityRole="alert">
            {message.error.message}
          </Text>
        ) : null}
        {message.role === 'assistant' && statusNote[message.status] && message.status !== 'pending' ? (
          <Text style={styles.note}>{statusNote[message.status]}</Text>
        ) : null}
        {message.role === 'assistant' && !running(message) && message.creditsCharged > 0 ? (
          <Text style={styles.note}>
            {message.creditsCharged} credit{message.creditsCharged === 1 ? '' : 's'} · {message.promptTokens + message.completionTokens} tokens
          </Text>
        ) : null}
      </View>
      {actions.length > 0 ? (
        <View style={styles.actions}>
          {actions.map((a) => (
            <Button key={a.key} title={a.title} kind={a.kind} onPress={() => void a.run()} testID={`action-${a.key}`} />
          ))}
        </View>
      ) : null}
    </View>
  );
});

const styles = StyleSheet.create((theme) => ({
  info: { paddingHorizontal: 16, paddingVertical: 8, borderBottomWidth: 1, borderBottomColor: theme.colors.border, gap: 2 },
  infoTitle: { color: theme.colors.text, fontSize: 16, fontWeight: '600' },
  infoModel: { color: theme.colors.textMuted, fontSize: 13 },
  center: { flex: 1, alignItems: 'center', justifyContent: 'center', gap: 12, padding: 16 },
  list: { flex: 1 },
  listContent: { padding: 12, gap: 10 },
  empty: { color: theme.colors.textMuted, textAlign: 'center', padding: 24, transform: [{ scaleY: -1 }] },
  row: { gap: 6 },
  rowMine: { alignItems: 'flex-end' },
  rowTheirs: { alignItems: 'flex-start' },
  bubble: { maxWidth: '92%', borderRadius: theme.radius.large, paddingHorizontal: 12, paddingVertical: 8, gap: 4 },
  bubbleMine: { backgroundColor: theme.colors.userBubble },
  bubbleTheirs: { backgroundColor: theme.colors.bgRaised, borderWidth: 1, borderColor: theme.colors.border },
  userText: { color: theme.colors.text, fontSize: 16, lineHeight: 23 },
  failed: { color: theme.colors.danger, fontSize: 14 },
  note: { color: theme.colors.textMuted, fontSize: 12 },
  actions: { flexDirection: 'row', gap: 8 },
  errorSlot: { paddingHorizontal: 12, paddingBottom: 4 },
}));
