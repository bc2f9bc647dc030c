// babel-preset-expo plus the Unistyles plugin, which turns StyleSheet.create
// in src/ into Unistyles' reactive styles.
module.exports = function (api) {
  api.cache(true);
  return {
    presets: ['babel-preset-expo'],
    plugins: [['react-native-unistyles/plugin', { root: 'src' }]],
  };
};
