// The signed-in app: live data, and a drawer of conversations around the
// chat and images tabs.
import { useRouter } from 'expo-router';
import { Drawer, type DrawerContentComponentProps } from 'expo-router/drawer';
import { Pressable, Text, View } from 'react-native';
import { useSafeAreaInsets } from 'react-native-safe-area-context';
import { StyleSheet, useUnistyles } from 'react-native-unistyles';

import { useSession } from '@/auth/session';
import { DrawerContentScrollView } from '@/components/themed';
import { Balance, Button, ErrorBanner } from '@/components/ui';
import { LiveProvider, useLive } from '@/live/live';

export default function AppLayout() {
  const { theme } = useUnistyles();
  return (
    <LiveProvider>
      <Drawer
        drawerContent={(props) => <Conversations {...props} />}
        screenOptions={{
          headerStyle: { backgroundColor: theme.colors.bgRaised },
          headerTintColor: theme.colors.text,
          headerTitleStyle: { color: theme.colors.text },
          headerShadowVisible: false,
          headerRight: () => <Balance />,
          drawerStyle: { backgroundColor: theme.colors.bgRaised, width: 300 },
          sceneStyle: { backgroundColor: theme.colors.bg },
          title: 'Luna',
        }}
      >
        <Drawer.Screen name="(tabs)" options={{ title: 'Luna' }} />
      </Drawer>
    </LiveProvider>
  );
}

function Conversations(props: DrawerContentComponentProps) {
  const { conversations, conversationsError, credits, models } = useLive();
  const { signOut } = useSession();
  const router = useRouter();
  const insets = useSafeAreaInsets();
  const modelName = (id: string) => models.find((m) => m.id === id)?.name ?? id;
  const go = (href: Parameters<typeof router.navigate>[0]) => {
    props.navigation.closeDrawer();
    router.navigate(href);
  };
  return (
    <View style={[styles.drawer, { paddingBottom: insets.bottom + 12 }]} testID="drawer">
      <DrawerContentScrollView {...props} contentContainerStyle={styles.scroll}>
        <View style={styles.header}>
          <Text style={styles.brand}>☾ Luna</Text>
          <Text style={styles.credits}>{credits ? `${credits.available.toLocaleString('en-US')} credits available` : ' '}</Text>
        </View>
        <Button title="New chat" onPress={() => go('/')} testID="new-chat" />
        <Pressable accessibilityRole="button" onPress={() => go('/images')} style={styles.item}>
          <Text style={styles.itemTitle}>Images</Text>
        </Pressable>
        <Text style={styles.section}>Conversations</Text>
        <ErrorBanner message={conversationsError} />
        {conversations.length === 0 && !conversationsError ? <Text style={styles.muted}>No conversations yet.</Text> : null}
        {conversations.map((c) => (
          <Pressable
            key={c.id}
            accessibilityRole="button"
            accessibilityLabel={`Conversation ${c.title || 'New conversation'}`}
            testID={`conversation-${c.id}`}
            onPress={() => go({ pathname: '/chat/[id]', params: { id: c.id } })}
            style={({ pressed }) => [styles.item, pressed && styles.pressed]}
          >
            <Text style={styles.itemTitle} numberOfLines={1}>
              {c.title || 'New conversation'}
              {c.generatingMessageId ? ' ✎' : ''}
            </Text>
            <Text style={styles.itemPreview} numberOfLines={1}>
              {c.lastMessagePreview || modelName(c.modelId)}
            </Text>
          </Pressable>
        ))}
      </DrawerContentScrollView>
      <View style={styles.footer}>
        <Button title="Sign out" kind="secondary" onPress={() => void signOut()} />
      </View>
    </View>
  );
}

const styles = StyleSheet.create((theme) => ({
  drawer: { flex: 1, backgroundColor: theme.colors.bgRaised },
  scroll: { gap: 8, paddingHorizontal: 12 },
  header: { gap: 4, marginBottom: 8 },
  brand: { color: theme.colors.accent, fontSize: 22, fontWeight: '700' },
  credits: { color: theme.colors.textMuted, fontSize: 14 },
  section: { color: theme.colors.textMuted, fontSize: 13, textTransform: 'uppercase', marginTop: 12, letterSpacing: 0.5 },
  muted: { color: theme.colors.textMuted, fontSize: 14 },
  item: { paddingVertical: 10, paddingHorizontal: 10, borderRadius: theme.radius.small },
  pressed: { backgroundColor: theme.colors.bgHover },
  itemTitle: { color: theme.colors.text, fontSize: 15, fontWeight: '600' },
  itemPreview: { color: theme.colors.textMuted, fontSize: 13, marginTop: 2 },
  footer: { paddingHorizontal: 12, paddingTop: 8, borderTopWidth: 1, borderTopColor: theme.colors.border },
}));
