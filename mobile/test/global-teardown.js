module.exports = async function globalTeardown() {
  if (globalThis.__luna) await globalThis.__luna.stop();
};
