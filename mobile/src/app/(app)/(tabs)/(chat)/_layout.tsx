// The chat tab: a new chat, and the conversations it opens.
import { Stack } from 'expo-router';
import { useUnistyles } from 'react-native-unistyles';

export default function ChatLayout() {
  const { theme } = useUnistyles();
  return (
    <Stack screenOptions={{ headerShown: false, contentStyle: { backgroundColor: theme.colors.bg } }}>
      <Stack.Screen name="index" />
      <Stack.Screen name="chat/[id]" />
    </Stack>
  );
}
