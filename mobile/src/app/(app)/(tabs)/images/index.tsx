// Images: write a prompt, pick a size, generate (the price is on the
// button); jobs update live (GET /v1/events) in the gallery below.
import { useRouter } from 'expo-router';
import { useState } from 'react';
import { ActivityIndicator, FlatList, Image, Pressable, Text, TextInput, View } from 'react-native';
import { StyleSheet, useUnistyles } from 'react-native-unistyles';

import { absoluteUrl } from '@/api/config';
import { describeError } from '@/api/errors';
import type { ImageJob, ImageResolution } from '@/api/types';
import { useSession } from '@/auth/session';
import { newId } from '@/components/format';
import { KeyboardScreen } from '@/components/KeyboardScreen';
import { Button, ErrorBanner } from '@/components/ui';
import { useLive } from '@/live/live';

const resolutions: ImageResolution[] = [512, 768, 1024];

export default function Images() {
  const { client, config } = useSession();
  const { images, upsertImage, credits } = useLive();
  const { theme } = useUnistyles();
  const [prompt, setPrompt] = useState('');
  const [resolution, setResolution] = useState<ImageResolution>(1024);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const cost = config?.imageCost ?? 0;

  const generate = async () => {
    const p = prompt.trim();
    if (!p) return;
    setBusy(true);
    setError(null);
    try {
      upsertImage(await client.createImage(p, resolution, newId()));
      setPrompt('');
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  const header = (
    <View style={styles.form}>
      <TextInput
        style={styles.prompt}
        value={prompt}
        onChangeText={setPrompt}
        placeholder="Describe an image"
        placeholderTextColor={theme.colors.textMuted}
        multiline
        maxLength={2000}
        accessibilityLabel="Image prompt"
        testID="image-prompt"
      />
      <View style={styles.sizes} accessibilityRole="radiogroup">
        {resolutions.map((r) => (
          <Pressable
            key={r}
            accessibilityRole="radio"
            accessibilityState={{ selected: r === resolution }}
            onPress={() => setResolution(r)}
            style={[styles.size, r === resolution && styles.sizeSelected]}
            testID={`size-${r}`}
          >
            <Text style={[styles.sizeText, r === resolution && styles.sizeTextSelected]}>
              {r}×{r}
            </Text>
          </Pressable>
        ))}
      </View>
      <Button
        title={`Generate · ${cost} credits`}
        onPress={generate}
        busy={busy}
        disabled={!prompt.trim()}
        testID="generate"
      />
      {credits && credits.available < cost ? (
        <Text style={styles.muted}>You have {credits.available} credits available; an image costs {cost}.</Text>
      ) : null}
      <ErrorBanner message={error} />
      <Text style={styles.section}>Gallery</Text>
      {images.length === 0 ? <Text style={styles.muted}>Your images will appear here.</Text> : null}
    </View>
  );

  return (
    <KeyboardScreen>
      <FlatList
        data={images}
        keyExtractor={(j) => j.id}
        numColumns={2}
        ListHeaderComponent={header}
        contentContainerStyle={styles.content}
        columnWrapperStyle={styles.columns}
        keyboardShouldPersistTaps="handled"
        renderItem={({ item }) => <Tile job={item} baseUrl={client.baseUrl} />}
        testID="gallery"
        ListFooterComponent={busy ? <ActivityIndicator color={theme.colors.accent} /> : undefined}
      />
    </KeyboardScreen>
  );
}

const statusText: Record<ImageJob['status'], string> = {
  pending: 'Queued…',
  processing: 'Generating…',
  completed: 'Done',
  failed: 'Failed',
};

function Tile({ job, baseUrl }: { job: ImageJob; baseUrl: string }) {
  const router = useRouter();
  const { theme } = useUnistyles();
  const done = job.status === 'completed' && job.image;
  return (
    <Pressable
      style={styles.tile}
      accessibilityRole="button"
      accessibilityLabel={`${statusText[job.status]}: ${job.prompt}`}
      testID={`image-${job.status}`}
      disabled={!done}
      onPress={() => router.push({ pathname: '/images/[id]', params: { id: job.id } })}
    >
      {done ? (
        <Image source={{ uri: absoluteUrl(baseUrl, job.image!.url) }} style={styles.thumb} accessibilityIgnoresInvertColors />
      ) : (
        <View style={[styles.thumb, styles.placeholder]}>
          {job.status === 'failed' ? (
            <Text style={styles.failed} numberOfLines={4}>
              {job.error?.message ?? 'The image could not be made.'} Credits were returned.
            </Text>
          ) : (
            <>
              <ActivityIndicator color={theme.colors.accent} />
              <Text style={styles.muted}>{statusText[job.status]}</Text>
            </>
          )}
        </View>
      )}
      <Text style={styles.caption} numberOfLines={2}>
        {job.prompt}
      </Text>
    </Pressable>
  );
}

const styles = StyleSheet.create((theme) => ({
  content: { padding: 12, gap: 12 },
  columns: { gap: 12 },
  form: { gap: 12 },
  prompt: {
    minHeight: 80,
    color: theme.colors.text,
    backgroundColor: theme.colors.bgSunken,
    borderColor: theme.colors.border,
    borderWidth: 1,
    borderRadius: theme.radius.large,
    padding: 12,
    fontSize: 16,
    textAlignVertical: 'top',
  },
  sizes: { flexDirection: 'row', gap: 8 },
  size: {
    flex: 1,
    alignItems: 'center',
    paddingVertical: 8,
    borderRadius: theme.radius.small,
    borderWidth: 1,
    borderColor: theme.colors.border,
    backgroundColor: theme.colors.bgRaised,
  },
  sizeSelected: { borderColor: theme.colors.accent, backgroundColor: theme.colors.userBubble },
  sizeText: { color: theme.colors.textMuted, fontSize: 14 },
  sizeTextSelected: { color: theme.colors.text, fontWeight: '600' },
  section: { color: theme.colors.textMuted, fontSize: 13, textTransform: 'uppercase', letterSpacing: 0.5, marginTop: 8 },
  muted: { color: theme.colors.textMuted, fontSize: 13 },
  tile: { flex: 1, maxWidth: '48.5%', gap: 6 },
  thumb: { width: '100%', aspectRatio: 1, borderRadius: theme.radius.large, backgroundColor: theme.colors.bgSunken },
  placeholder: { alignItems: 'center', justifyContent: 'center', gap: 8, padding: 8 },
  failed: { color: theme.colors.danger, fontSize: 13, textAlign: 'center' },
  caption: { color: theme.colors.text, fontSize: 13 },
}));
