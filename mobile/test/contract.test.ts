// The app's types come from internal/api/openapi.json: the running server
// must serve exactly that document, and schema.gen.ts must be what
// openapi-typescript makes of it today (run `npm run gen:api` after
// changing the document).
import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { lunaUrl } from './helpers';

const root = path.resolve(__dirname, '..');
const documentPath = path.join(root, '..', 'internal', 'api', 'openapi.json');

describe('API contract', () => {
  test('the served /openapi.json is the document the types were generated from', async () => {
    const res = await fetch(lunaUrl() + '/openapi.json');
    expect(res.status).toBe(200);
    const served: unknown = await res.json();
    const file: unknown = JSON.parse(fs.readFileSync(documentPath, 'utf8'));
    expect(served).toEqual(file);
  });

  test('src/api/schema.gen.ts is up to date with openapi.json', () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'luna-schema-')), 'schema.gen.ts');
    execFileSync(process.execPath, [path.join(root, 'node_modules', 'openapi-typescript', 'bin', 'cli.js'), documentPath, '-o', out], {
      cwd: root,
      stdio: 'pipe',
    });
    const fresh = fs.readFileSync(out, 'utf8');
    const committed = fs.readFileSync(path.join(root, 'src', 'api', 'schema.gen.ts'), 'utf8');
    // A mismatch means: run `npm run gen:api` in mobile/ and commit the result.
    expect(committed === fresh).toBe(true);
  });
});
