// Starts one real `luna serve` for the whole Jest run: demo mode (the
// built-in demo model and image endpoint), loopback, a temporary data dir,
// invite-only sign-up with no initial credits (invite codes carry them, so
// tests can make users with exactly the credits they need), and at most
// two running replies per user (so a test can reach the 429 cheaply); the
// sign-in rate limit is raised, as every test signs up from 127.0.0.1.
const { spawnLuna } = require('./luna-process');

module.exports = async function globalSetup() {
  const luna = await spawnLuna();
  globalThis.__luna = luna;
  process.env.LUNA_TEST_URL = luna.url;
  process.env.LUNA_TEST_DATA_DIR = luna.dataDir;
  process.env.LUNA_TEST_BIN = luna.bin;
};
