// Adds package-lock.json entries for platform-specific optional packages
// (e.g. @expo/modules-macros-win32-x64) that the registry this lock was
// made against did not serve: without them `npm ci` refuses the lock
// ("Missing: … from lock file"). Each entry names its platform (os, cpu,
// libc from the package name), so npm installs it only on that platform and
// skips it elsewhere. Run after `npm install` changed the lock:
//
//   node scripts/lock-optional-platforms.js
const fs = require('node:fs');
const path = require('node:path');

const file = path.join(__dirname, '..', 'package-lock.json');
const lock = JSON.parse(fs.readFileSync(file, 'utf8'));
const pkgs = lock.packages;

function platform(name) {
  const os = ['darwin', 'linux', 'win32', 'freebsd', 'android'].find((o) => name.includes(`-${o}-`));
  const cpu = ['arm64', 'x64', 'ia32', 'arm'].find((c) => new RegExp(`-${c}(-|$)`).test(name));
  if (!os || !cpu) return null;
  const p = { os: [os], cpu: [cpu] };
  if (name.endsWith('-musl')) p.libc = ['musl'];
  else if (name.endsWith('-gnu')) p.libc = ['glibc'];
  return p;
}

let added = 0;
for (const [key, entry] of Object.entries(pkgs)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const nested = `${key ? key + '/' : ''}node_modules/${dep}`;
    if (pkgs[nested] || pkgs[`node_modules/${dep}`]) continue;
    const p = platform(dep);
    if (!p || !/^\d+\.\d+\.\d+/.test(version)) {
      console.error(`skipping ${dep}@${version}: not a pinned platform package`);
      continue;
    }
    pkgs[`node_modules/${dep}`] = { version, optional: true, ...p };
    added++;
  }
}
// npm keeps packages sorted by path.
lock.packages = Object.fromEntries(Object.entries(pkgs).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))));
fs.writeFileSync(file, JSON.stringify(lock, null, 2) + '\n');
console.log(`added ${added} platform entries`);
