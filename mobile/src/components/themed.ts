// Components from other libraries, wrapped so that Unistyles styles reach
// them (on the web, Unistyles turns styles into CSS classes that only its
// own wrapped components apply).
import { Link as RouterLink } from 'expo-router';
import { DrawerContentScrollView as RouterDrawerScroll } from 'expo-router/drawer';
import { GestureHandlerRootView } from 'react-native-gesture-handler';
import { SafeAreaView as RNSafeAreaView } from 'react-native-safe-area-context';
import { withUnistyles } from 'react-native-unistyles';

export const SafeAreaView = withUnistyles(RNSafeAreaView);
export const GestureRoot = withUnistyles(GestureHandlerRootView);
export const Link = withUnistyles(RouterLink);
export const DrawerContentScrollView = withUnistyles(RouterDrawerScroll);
