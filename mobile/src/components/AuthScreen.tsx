// The frame of the sign-in and sign-up screens: keyboard-aware, safe areas.
import type { ReactNode } from 'react';
import { KeyboardAvoidingView, Platform, ScrollView, Text, View } from 'react-native';
import { SafeAreaView } from './themed';
import { StyleSheet } from 'react-native-unistyles';

export function AuthScreen({ title, subtitle, children }: { title: string; subtitle: string; children: ReactNode }) {
  return (
    <SafeAreaView style={styles.safe} edges={['top', 'bottom', 'left', 'right']}>
      <KeyboardAvoidingView style={styles.flex} behavior={Platform.OS === 'ios' ? 'padding' : undefined}>
        <ScrollView contentContainerStyle={styles.scroll} keyboardShouldPersistTaps="handled">
          <View style={styles.brand}>
            <Text style={styles.logo}>☾ Luna</Text>
            <Text style={styles.title} accessibilityRole="header">
              {title}
            </Text>
            <Text style={styles.subtitle}>{subtitle}</Text>
          </View>
          {children}
        </ScrollView>
      </KeyboardAvoidingView>
    </SafeAreaView>
  );
}

const styles = StyleSheet.create((theme) => ({
  safe: { flex: 1, backgroundColor: theme.colors.bg },
  flex: { flex: 1 },
  scroll: { flexGrow: 1, justifyContent: 'center', padding: 24, gap: 14, maxWidth: 480, width: '100%', alignSelf: 'center' },
  brand: { gap: 6, marginBottom: 12 },
  logo: { color: theme.colors.accent, fontSize: 20, fontWeight: '700' },
  title: { color: theme.colors.text, fontSize: 28, fontWeight: '700' },
  subtitle: { color: theme.colors.textMuted, fontSize: 15 },
}));
