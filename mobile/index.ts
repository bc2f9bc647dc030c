// The entry point: Unistyles must be configured before any screen's
// StyleSheet.create runs, so the theme is imported before Expo Router.
import './src/theme/unistyles';
import 'expo-router/entry';
