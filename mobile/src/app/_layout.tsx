// The root: gestures, safe areas, the session, and the gate between the
// sign-in screens and the app.
import { Stack } from 'expo-router';
import { StatusBar } from 'expo-status-bar';
import { ActivityIndicator, Text, View } from 'react-native';
import { SafeAreaProvider } from 'react-native-safe-area-context';
import { StyleSheet, useUnistyles } from 'react-native-unistyles';

import { ClerkGate } from '@/auth/clerkLazy';
import { SessionProvider, useSession } from '@/auth/session';
import { GestureRoot } from '@/components/themed';
import { Button, ErrorBanner } from '@/components/ui';

export default function RootLayout() {
  return (
    <GestureRoot style={styles.flex}>
      <SafeAreaProvider>
        <SessionProvider>
          <StatusBar style="light" />
          <Gate />
        </SessionProvider>
      </SafeAreaProvider>
    </GestureRoot>
  );
}

function Gate() {
  const { status, config, configError, retryConfig } = useSession();
  const { theme } = useUnistyles();
  if (configError) {
    return (
      <View style={styles.center}>
        <Text style={styles.title}>Luna</Text>
        <ErrorBanner message={configError} />
        <Button title="Try again" onPress={retryConfig} kind="secondary" />
      </View>
    );
  }
  if (!config || (config.mode === 'local' && status === 'loading')) {
    return (
      <View style={styles.center}>
        <ActivityIndicator color={theme.colors.accent} />
      </View>
    );
  }
  const stack = (
    <Stack screenOptions={{ headerShown: false, contentStyle: { backgroundColor: theme.colors.bg } }}>
      <Stack.Protected guard={status === 'signedIn'}>
        <Stack.Screen name="(app)" />
      </Stack.Protected>
      <Stack.Protected guard={status !== 'signedIn'}>
        <Stack.Screen name="sign-in" />
        <Stack.Screen name="sign-up" />
      </Stack.Protected>
    </Stack>
  );
  return config.mode === 'clerk' ? <ClerkGate>{stack}</ClerkGate> : stack;
}

const styles = StyleSheet.create((theme) => ({
  flex: { flex: 1, backgroundColor: theme.colors.bg },
  center: { flex: 1, backgroundColor: theme.colors.bg, alignItems: 'center', justifyContent: 'center', gap: 16, padding: 24 },
  title: { color: theme.colors.text, fontSize: 28, fontWeight: '700' },
}));
