// One image at full size. The signed URL expires: a fresh one comes with
// GET /v1/images/{id}.
import { useLocalSearchParams, useRouter } from 'expo-router';
import { useEffect, useState } from 'react';
import { ActivityIndicator, Image, ScrollView, Text, View } from 'react-native';
import { StyleSheet, useUnistyles } from 'react-native-unistyles';

import { absoluteUrl } from '@/api/config';
import { describeError } from '@/api/errors';
import type { ImageJob } from '@/api/types';
import { useSession } from '@/auth/session';
import { SafeAreaView } from '@/components/themed';
import { Button, ErrorBanner } from '@/components/ui';

export default function ImageView() {
  const { id } = useLocalSearchParams<{ id: string }>();
  const { client } = useSession();
  const router = useRouter();
  const { theme } = useUnistyles();
  const [job, setJob] = useState<ImageJob | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    client.image(id).then(setJob, (err) => setError(describeError(err)));
  }, [client, id]);

  return (
    <SafeAreaView style={styles.safe} edges={['bottom', 'left', 'right']}>
      <ScrollView contentContainerStyle={styles.body} maximumZoomScale={4} minimumZoomScale={1}>
        <ErrorBanner message={error} />
        {!job && !error ? <ActivityIndicator color={theme.colors.accent} /> : null}
        {job?.image ? (
          <View style={styles.frame}>
            <Image
              source={{ uri: absoluteUrl(client.baseUrl, job.image.url) }}
              style={[styles.full, { aspectRatio: job.image.width / Math.max(1, job.image.height) }]}
              resizeMode="contain"
              accessibilityLabel={job.prompt}
              testID="full-image"
            />
          </View>
        ) : null}
        {job ? (
          <View style={styles.meta}>
            <Text style={styles.prompt}>{job.prompt}</Text>
            <Text style={styles.muted}>
              {job.resolution}×{job.resolution} · {job.cost} credits
            </Text>
          </View>
        ) : null}
        <Button title="Back to gallery" kind="secondary" onPress={() => router.back()} />
      </ScrollView>
    </SafeAreaView>
  );
}

const styles = StyleSheet.create((theme) => ({
  safe: { flex: 1, backgroundColor: theme.colors.bg },
  body: { padding: 12, gap: 12 },
  frame: { width: '100%' },
  full: { width: '100%', borderRadius: theme.radius.large },
  meta: { gap: 4 },
  prompt: { color: theme.colors.text, fontSize: 15 },
  muted: { color: theme.colors.textMuted, fontSize: 13 },
}));
