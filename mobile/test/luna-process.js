// Builds (unless LUNA_BIN is given) and starts a real `luna serve` on a
// free loopback port, in demo mode, with a temporary data dir. Used by
// Jest's global setup and by the web journey in Chromium.
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');

// lunaBinary returns the binary to run and whether it was built here (and
// is to be removed afterwards).
function lunaBinary() {
  if (process.env.LUNA_BIN) return { bin: process.env.LUNA_BIN, built: false };
  const out = path.join(os.tmpdir(), `luna-mobile-test-${process.pid}`);
  execFileSync('go', ['build', '-o', out, './cmd/luna'], { cwd: repo, stdio: 'inherit' });
  return { bin: out, built: true };
}

async function spawnLuna(extraArgs = []) {
  const { bin, built } = lunaBinary();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'luna-mobile-data-'));
  const args = [
    'serve', '--addr', '127.0.0.1:0', '--data-dir', dataDir,
    '--signup-mode', 'invite', '--initial-credits', '0',
    '--max-replies-per-user', '2', '--auth-rate-limit', '10000', '--log-format', 'json', ...extraArgs,
  ];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LUNA_DATABASE_URL: '' } });
  // Never outlive the test run, even when it is killed before its teardown.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const log = [];
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('luna did not start in 60 s:\n' + log.join(''))), 60_000);
    let buf = '';
    const onData = (chunk) => {
      const s = chunk.toString();
      log.push(s);
      buf += s;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const rec = JSON.parse(line);
          if (rec.msg === 'Luna is listening' && rec.url) {
            clearTimeout(timer);
            resolve(rec.url);
          }
        } catch {
          // not a log record
        }
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`luna exited with ${code}:\n` + log.join('')));
    });
  });
  return {
    url,
    dataDir,
    bin,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => {
          process.removeListener('exit', killOnExit);
          fs.rmSync(dataDir, { recursive: true, force: true });
          if (built) fs.rmSync(bin, { force: true });
          resolve();
        });
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 20_000).unref();
      }),
  };
}

// invite makes one single-use invite code worth `credits` credits, with the
// real admin command (it works while the server runs).
function invite(credits) {
  const out = execFileSync(process.env.LUNA_TEST_BIN, [
    'invites', 'create', '--data-dir', process.env.LUNA_TEST_DATA_DIR,
    '--uses', '1', '--credits', String(credits),
  ], { env: { ...process.env, LUNA_DATABASE_URL: '' } }).toString();
  const code = out.trim().split(/\s+/).pop();
  if (!code) throw new Error('no invite code in: ' + out);
  return code;
}

module.exports = { spawnLuna, invite };
