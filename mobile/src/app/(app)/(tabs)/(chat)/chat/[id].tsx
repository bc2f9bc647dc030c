// A conversation: its messages in a virtualised list (newest at the
// bottom), the reply streaming as it is written, Stop, and the composer.
import { useLocalSearchParams, useRouter } from 'expo-router';
import { memo, useCallback, useEffect, useRef, useState } from 'react';
import { ActivityIndicator, FlatList, Text, TextInput, View } from 'react-native';
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

// MessageAction is one per-message action the API offers: Stop a running
// reply; regenerate or continue the last reply; edit the last question;
// page between versions. The list is computed from the message and its
// place in the conversation.
interface MessageAction {
  key: string;
  title: string;
  label?: string;
  kind: 'secondary' | 'danger';
  run: () => Promise<void> | void;
}

interface ActionContext {
  client: LunaClient;
  isLast: boolean; // the last message shown
  isLastQuestion: boolean; // the last user message shown
  busy: boolean; // a reply is generating in the conversation
  setError: (e: string | null) => void;
  after: (res?: { conversation?: ConversationWithMessages }) => void;
  edit: (m: Message) => void;
}

function messageActions(m: Message, ctx: ActionContext): MessageAction[] {
  const { client, setError, after } = ctx;
  const act = (key: string, title: string, call: () => Promise<unknown>, kind: MessageAction['kind'] = 'secondary', label?: string) => ({
    key,
    title,
    label,
    kind,
    run: async () => {
      setError(null);
      try {
        const res = await call();
        after(res && typeof res === 'object' && 'messages' in res ? { conversation: res as ConversationWithMessages } : undefined);
      } catch (err) {
        setError(describeError(err));
      }
    },
  });
  const actions: MessageAction[] = [];
  if (m.role === 'assistant' && running(m)) {
    actions.push(act('stop', 'Stop', () => client.cancelMessage(m.id), 'danger'));
    return actions;
  }
  const versions = m.versionIds ?? [];
  const index = (m.versionIndex ?? 1) - 1;
  if (!ctx.busy && versions.length > 1) {
    if (index > 0) actions.push(act('previous', '‹', () => client.selectVersion(versions[index - 1]!), 'secondary', 'Previous version'));
    actions.push({ key: 'version', title: `${index + 1} / ${versions.length}`, kind: 'secondary', run: () => {} });
    if (index < versions.length - 1) actions.push(act('next', '›', () => client.selectVersion(versions[index + 1]!), 'secondary', 'Next version'));
  }
  if (ctx.busy) return actions;
  if (m.role === 'assistant' && ctx.isLast) {
    actions.push(act('regenerate', 'Regenerate', () => client.regenerate(m.id, newId())));
    const stopped = m.status === 'cancelled' || m.status === 'interrupted' || m.status === 'error' || m.finishReason === 'length';
    if (stopped && m.content) actions.push(act('continue', 'Continue', () => client.continueMessage(m.id, newId())));
  }
  if (m.role === 'user' && ctx.isLastQuestion) {
    actions.push({ key: 'edit', title: 'Edit', kind: 'secondary', run: () => ctx.edit(m) });
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
  const { models, onMessage, resumed, conversations, deleted } = useLive();
  const router = useRouter();
  const [editing, setEditing] = useState<Message | null>(null);
  const [editText, setEditText] = useState('');
  const [confirmDelete, setConfirmDelete] = useState(false);
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
  const lastQuestionId = [...messages].reverse().find((m) => m.role === 'user')?.id;
  const ctx = (m: Message): ActionContext => ({
    client,
    isLast: messages[messages.length - 1]?.id === m.id,
    isLastQuestion: m.id === lastQuestionId,
    busy: !!runningId,
    setError,
    after: (res) => {
      if (res?.conversation) {
        setConv(res.conversation);
        setMessages(res.conversation.messages.items);
        setOlderCursor(res.conversation.messages.nextCursor);
      } else {
        setAttempt((n) => n + 1); // reload: the new reply is then followed
      }
    },
    edit: (m) => {
      setEditing(m);
      setEditText(m.content ?? '');
    },
  });
  const runningMessage = runningId ? messages.find((m) => m.id === runningId) : undefined;
  const stop = runningMessage ? messageActions(runningMessage, ctx(runningMessage)).find((a) => a.key === 'stop') : undefined;

  const saveEdit = async () => {
    if (!editing || !editText.trim()) return;
    setError(null);
    try {
      await client.editMessage(editing.id, editText.trim(), newId());
      setEditing(null);
      setAttempt((n) => n + 1);
    } catch (err) {
      setError(describeError(err));
    }
  };

  const remove = async () => {
    setError(null);
    try {
      await client.deleteConversation(id);
      router.replace('/');
    } catch (err) {
      setConfirmDelete(false);
      setError(describeError(err));
    }
  };

  if (deleted.has(id)) {
    return (
      <View style={styles.center}>
        <Text style={styles.infoTitle}>This conversation was deleted.</Text>
        <Button title="New chat" onPress={() => router.replace('/')} />
      </View>
    );
  }

  return (
    <KeyboardScreen>
      <View style={styles.info}>
        <View style={styles.infoText}>
          <Text style={styles.infoTitle} numberOfLines={1} accessibilityRole="header">
            {conv ? title || 'New conversation' : ' '}
          </Text>
          <Text style={styles.infoModel} numberOfLines={1}>
            {model ? `${model.name} · ${modelPrice(model)}` : (conv?.modelId ?? '')}
          </Text>
        </View>
        {conv && !confirmDelete ? (
          <Button title="Delete" kind="secondary" onPress={() => setConfirmDelete(true)} testID="delete-conversation" />
        ) : null}
      </View>
      {confirmDelete ? (
        <View style={styles.confirm} accessible accessibilityRole="alert">
          <Text style={styles.confirmText}>Delete this conversation? Its images stay in the gallery.</Text>
          <View style={styles.actions}>
            <Button title="Delete conversation" kind="danger" onPress={() => void remove()} testID="confirm-delete" />
            <Button title="Keep" kind="secondary" onPress={() => setConfirmDelete(false)} />
          </View>
        </View>
      ) : null}
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
              actions={messageActions(item, ctx(item))}
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
      {editing ? (
        <View style={styles.editBar}>
          <Text style={styles.infoModel}>Edit your last message; the old exchange stays as an earlier version.</Text>
          <TextInput
            style={styles.editInput}
            value={editText}
            onChangeText={setEditText}
            multiline
            accessibilityLabel="Edited message"
            testID="edit-input"
          />
          <View style={styles.actions}>
            <Button title="Send edit" onPress={() => void saveEdit()} disabled={!editText.trim()} testID="save-edit" />
            <Button title="Cancel" kind="secondary" onPress={() => setEditing(null)} />
          </View>
        </View>
      ) : (
        <Composer onSend={send} busy={sending} generating={!!runningId} onStop={stop ? () => void stop.run() : undefined} />
      )}
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
            <Button
              key={a.key}
              title={a.title}
              accessibilityLabel={a.label}
              kind={a.kind}
              onPress={() => void a.run()}
              disabled={a.key === 'version'}
              testID={`action-${a.key}`}
            />
          ))}
        </View>
      ) : null}
    </View>
  );
});

const styles = StyleSheet.create((theme) => ({
  info: {
    flexDirection: 'row',
    alignItems: 'center',
    gap: 8,
    paddingHorizontal: 16,
    paddingVertical: 8,
    borderBottomWidth: 1,
    borderBottomColor: theme.colors.border,
  },
  infoText: { flex: 1, gap: 2 },
  confirm: { padding: 12, gap: 8, backgroundColor: theme.colors.dangerBg, borderBottomWidth: 1, borderBottomColor: theme.colors.danger },
  confirmText: { color: theme.colors.text, fontSize: 15 },
  editBar: { padding: 10, gap: 8, borderTopWidth: 1, borderTopColor: theme.colors.border, backgroundColor: theme.colors.bgRaised },
  editInput: {
    minHeight: 60,
    maxHeight: 160,
    color: theme.colors.text,
    backgroundColor: theme.colors.bgSunken,
    borderColor: theme.colors.border,
    borderWidth: 1,
    borderRadius: theme.radius.large,
    padding: 12,
    fontSize: 16,
  },
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
