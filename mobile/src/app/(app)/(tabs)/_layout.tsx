// The two tabs: Chat (new chat and conversations) and Images.
import { Tabs } from 'expo-router';
import { Text } from 'react-native';
import { useUnistyles } from 'react-native-unistyles';

export default function TabsLayout() {
  const { theme } = useUnistyles();
  return (
    <Tabs
      screenOptions={{
        headerShown: false,
        tabBarStyle: { backgroundColor: theme.colors.bgRaised, borderTopColor: theme.colors.border },
        tabBarActiveTintColor: theme.colors.accent,
        tabBarInactiveTintColor: theme.colors.textMuted,
        sceneStyle: { backgroundColor: theme.colors.bg },
      }}
    >
      <Tabs.Screen
        name="(chat)"
        options={{ title: 'Chat', tabBarIcon: ({ color }) => <Text style={{ color, fontSize: 18 }}>✦</Text> }}
      />
      <Tabs.Screen
        name="images"
        options={{ title: 'Images', tabBarIcon: ({ color }) => <Text style={{ color, fontSize: 18 }}>▣</Text> }}
      />
    </Tabs>
  );
}
