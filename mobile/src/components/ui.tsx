// Small shared pieces in Luna's look.
import type { ReactNode } from 'react';
import { ActivityIndicator, Pressable, Text, TextInput, View, type TextInputProps } from 'react-native';
import { StyleSheet, useUnistyles } from 'react-native-unistyles';

import { useLive } from '@/live/live';

export function Button({
  title,
  onPress,
  disabled,
  busy,
  kind = 'primary',
  testID,
  accessibilityLabel,
}: {
  title: string;
  onPress: () => void;
  disabled?: boolean;
  busy?: boolean;
  kind?: 'primary' | 'secondary' | 'danger';
  testID?: string;
  accessibilityLabel?: string;
}) {
  styles.useVariants({ kind });
  const { theme } = useUnistyles();
  return (
    <Pressable
      testID={testID}
      accessibilityRole="button"
      accessibilityLabel={accessibilityLabel ?? title}
      accessibilityState={{ disabled: !!(disabled || busy), busy: !!busy }}
      disabled={disabled || busy}
      onPress={onPress}
      style={({ pressed }) => [styles.button, (disabled || busy) && styles.disabled, pressed && styles.pressed]}
    >
      {busy ? <ActivityIndicator color={kind === 'primary' ? theme.colors.accentText : theme.colors.text} /> : null}
      <Text style={styles.buttonText}>{title}</Text>
    </Pressable>
  );
}

export function Field({ label, ...props }: TextInputProps & { label: string }) {
  const { theme } = useUnistyles();
  return (
    <View style={styles.field}>
      <Text style={styles.label}>{label}</Text>
      <TextInput
        accessibilityLabel={label}
        placeholderTextColor={theme.colors.textMuted}
        style={styles.input}
        autoCapitalize="none"
        autoCorrect={false}
        {...props}
      />
    </View>
  );
}

// ErrorBanner shows a readable error; role alert so screen readers say it.
export function ErrorBanner({ message, testID = 'error' }: { message: string | null | undefined; testID?: string }) {
  if (!message) return null;
  return (
    <View style={styles.error} accessible accessibilityRole="alert" testID={testID}>
      <Text style={styles.errorText}>{message}</Text>
    </View>
  );
}

// Balance is the live credit balance (GET /v1/events keeps it current).
export function Balance() {
  const { credits } = useLive();
  return (
    <View style={styles.balance} testID="balance" accessibilityLabel={credits ? `${credits.available} credits available` : 'Balance loading'}>
      <Text style={styles.balanceText}>{credits ? `${credits.available.toLocaleString('en-US')} credits` : '…'}</Text>
    </View>
  );
}

export function Screen({ children }: { children: ReactNode }) {
  return <View style={styles.screen}>{children}</View>;
}

const styles = StyleSheet.create((theme) => ({
  screen: { flex: 1, backgroundColor: theme.colors.bg },
  button: {
    flexDirection: 'row',
    alignItems: 'center',
    justifyContent: 'center',
    gap: 8,
    borderRadius: theme.radius.large,
    paddingVertical: 12,
    paddingHorizontal: 16,
    variants: {
      kind: {
        primary: { backgroundColor: theme.colors.accent },
        secondary: { backgroundColor: theme.colors.bgRaised, borderWidth: 1, borderColor: theme.colors.border },
        danger: { backgroundColor: theme.colors.dangerBg, borderWidth: 1, borderColor: theme.colors.danger },
      },
    },
  },
  buttonText: {
    fontSize: 16,
    fontWeight: '600',
    variants: {
      kind: {
        primary: { color: theme.colors.accentText },
        secondary: { color: theme.colors.text },
        danger: { color: theme.colors.danger },
      },
    },
  },
  disabled: { opacity: 0.5 },
  pressed: { opacity: 0.8 },
  field: { gap: 6 },
  label: { color: theme.colors.textMuted, fontSize: 14 },
  input: {
    backgroundColor: theme.colors.bgSunken,
    borderColor: theme.colors.border,
    borderWidth: 1,
    borderRadius: theme.radius.small,
    color: theme.colors.text,
    fontSize: 16,
    paddingHorizontal: 12,
    paddingVertical: 10,
  },
  error: {
    backgroundColor: theme.colors.dangerBg,
    borderColor: theme.colors.danger,
    borderWidth: 1,
    borderRadius: theme.radius.small,
    padding: 10,
  },
  errorText: { color: theme.colors.danger, fontSize: 15 },
  balance: {
    backgroundColor: theme.colors.bgRaised,
    borderColor: theme.colors.border,
    borderWidth: 1,
    borderRadius: 999,
    paddingHorizontal: 10,
    paddingVertical: 4,
    marginRight: 12,
  },
  balanceText: { color: theme.colors.accent, fontSize: 14, fontWeight: '600' },
}));
