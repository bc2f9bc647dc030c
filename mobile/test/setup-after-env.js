// Unistyles' own Jest mocks (the native Nitro module does not exist in Node).
require('react-native-unistyles/mocks');
require('../src/theme/unistyles');
