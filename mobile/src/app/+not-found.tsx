import { Text, View } from 'react-native';
import { StyleSheet } from 'react-native-unistyles';

import { Link } from '@/components/themed';

export default function NotFound() {
  return (
    <View style={styles.center}>
      <Text style={styles.text}>This screen does not exist.</Text>
      <Link href="/" style={styles.link}>
        Go to Luna
      </Link>
    </View>
  );
}

const styles = StyleSheet.create((theme) => ({
  center: { flex: 1, alignItems: 'center', justifyContent: 'center', gap: 12, backgroundColor: theme.colors.bg },
  text: { color: theme.colors.text, fontSize: 16 },
  link: { color: theme.colors.accent, fontSize: 16 },
}));
