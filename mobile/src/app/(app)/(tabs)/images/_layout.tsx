// The images tab: the generator and gallery, and a full-size view.
import { Stack } from 'expo-router';
import { useUnistyles } from 'react-native-unistyles';

export default function ImagesLayout() {
  const { theme } = useUnistyles();
  return (
    <Stack
      screenOptions={{
        headerShown: false,
        contentStyle: { backgroundColor: theme.colors.bg },
      }}
    >
      <Stack.Screen name="index" />
      <Stack.Screen name="[id]" options={{ presentation: 'modal' }} />
    </Stack>
  );
}
