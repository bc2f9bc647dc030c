// New chat: pick a model (with its price), write the first message; the
// conversation is created with that model and the chat screen opens.
import { useRouter } from 'expo-router';
import { useState } from 'react';
import { Pressable, ScrollView, Text, View } from 'react-native';
import { StyleSheet } from 'react-native-unistyles';

import { describeError } from '@/api/errors';
import { useSession } from '@/auth/session';
import { Composer } from '@/components/Composer';
import { modelPrice, newId, tokens } from '@/components/format';
import { KeyboardScreen } from '@/components/KeyboardScreen';
import { ErrorBanner } from '@/components/ui';
import { useLive } from '@/live/live';

export default function NewChat() {
  const { client } = useSession();
  const { models, upsertConversation } = useLive();
  const router = useRouter();
  const [picked, setModelId] = useState<string | null>(null);
  const modelId = picked ?? models[0]?.id ?? null;
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const send = async (text: string): Promise<boolean> => {
    if (!modelId) return false;
    setBusy(true);
    setError(null);
    try {
      const conv = await client.createConversation(modelId);
      upsertConversation(conv);
      try {
        await client.sendMessage(conv.id, text, newId());
      } catch (err) {
        // The conversation exists; open it and say why the message failed.
        router.navigate({ pathname: '/chat/[id]', params: { id: conv.id, error: describeError(err) } });
        return false;
      }
      router.navigate({ pathname: '/chat/[id]', params: { id: conv.id } });
      return true;
    } catch (err) {
      setError(describeError(err));
      return false;
    } finally {
      setBusy(false);
    }
  };

  return (
    <KeyboardScreen>
      <ScrollView contentContainerStyle={styles.body} keyboardShouldPersistTaps="handled">
        <Text style={styles.title} accessibilityRole="header">
          New chat
        </Text>
        <Text style={styles.muted}>Pick a model. It stays with the conversation.</Text>
        <View accessibilityRole="radiogroup" style={styles.models}>
          {models.map((m) => {
            const selected = m.id === modelId;
            return (
              <Pressable
                key={m.id}
                accessibilityRole="radio"
                accessibilityState={{ selected }}
                testID={`model-${m.id}`}
                onPress={() => setModelId(m.id)}
                style={[styles.model, selected && styles.modelSelected]}
              >
                <View style={styles.modelHead}>
                  <Text style={styles.modelName}>{m.name}</Text>
                  <Text style={styles.price}>{modelPrice(m)}</Text>
                </View>
                {m.description ? <Text style={styles.muted}>{m.description}</Text> : null}
                <Text style={styles.small}>
                  {tokens(m.contextTokens)} context · up to {tokens(m.maxOutputTokens)} per reply
                </Text>
              </Pressable>
            );
          })}
        </View>
        <ErrorBanner message={error} />
      </ScrollView>
      <Composer onSend={send} busy={busy} disabled={!modelId} placeholder="Ask anything" />
    </KeyboardScreen>
  );
}

const styles = StyleSheet.create((theme) => ({
  body: { padding: 16, gap: 12 },
  title: { color: theme.colors.text, fontSize: 24, fontWeight: '700' },
  muted: { color: theme.colors.textMuted, fontSize: 14 },
  small: { color: theme.colors.textMuted, fontSize: 12 },
  models: { gap: 10 },
  model: {
    gap: 4,
    padding: 12,
    borderRadius: theme.radius.large,
    borderWidth: 1,
    borderColor: theme.colors.border,
    backgroundColor: theme.colors.bgRaised,
  },
  modelSelected: { borderColor: theme.colors.accent, backgroundColor: theme.colors.userBubble },
  modelHead: { flexDirection: 'row', justifyContent: 'space-between', gap: 8, flexWrap: 'wrap' },
  modelName: { color: theme.colors.text, fontSize: 16, fontWeight: '600' },
  price: { color: theme.colors.accent, fontSize: 14, fontWeight: '600' },
}));
