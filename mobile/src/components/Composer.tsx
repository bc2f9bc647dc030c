// The message input: grows with the text, sends on the button, and turns
// into Stop while a reply is being written. It sits above the keyboard
// and the home indicator (the screen's KeyboardAvoidingView and safe area).
import { useState } from 'react';
import { TextInput, View } from 'react-native';
import { StyleSheet, useUnistyles } from 'react-native-unistyles';

import { Button } from './ui';

export function Composer({
  onSend,
  onStop,
  generating,
  busy,
  disabled,
  placeholder = 'Message Luna',
}: {
  onSend: (text: string) => Promise<boolean>;
  onStop?: () => void;
  generating?: boolean;
  busy?: boolean;
  disabled?: boolean;
  placeholder?: string;
}) {
  const [text, setText] = useState('');
  const { theme } = useUnistyles();
  const send = async () => {
    const t = text.trim();
    if (!t) return;
    // Keep the text when the send failed, so nothing typed is lost.
    if (await onSend(t)) setText('');
  };
  return (
    <View style={styles.bar}>
      <TextInput
        style={styles.input}
        value={text}
        onChangeText={setText}
        placeholder={placeholder}
        placeholderTextColor={theme.colors.textMuted}
        multiline
        accessibilityLabel="Message"
        testID="composer-input"
        maxLength={32000}
      />
      {generating && onStop ? (
        <Button title="Stop" kind="danger" onPress={onStop} testID="stop" />
      ) : (
        <Button title="Send" onPress={send} busy={busy} disabled={disabled || !text.trim()} testID="send" />
      )}
    </View>
  );
}

const styles = StyleSheet.create((theme) => ({
  bar: {
    flexDirection: 'row',
    alignItems: 'flex-end',
    gap: 8,
    padding: 10,
    borderTopWidth: 1,
    borderTopColor: theme.colors.border,
    backgroundColor: theme.colors.bgRaised,
  },
  input: {
    flex: 1,
    minHeight: 44,
    maxHeight: 160,
    color: theme.colors.text,
    backgroundColor: theme.colors.bgSunken,
    borderColor: theme.colors.border,
    borderWidth: 1,
    borderRadius: theme.radius.large,
    paddingHorizontal: 12,
    paddingTop: 11,
    paddingBottom: 11,
    fontSize: 16,
  },
}));
