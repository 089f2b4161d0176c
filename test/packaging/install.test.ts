// The README's install steps on a clean root: agent/packaging/install.sh, run with ROOT= on an empty
// directory as on an image being assembled, from a release laid out as `npm run package` lays it out (the
// bundle, package.json, node_modules, the packaging files). systemd-sysusers and systemd-tmpfiles are the
// real ones and work on that directory: the user and group lastgasp, the directories with their owners and
// modes, the config and the unit must all be there, the unit must pass systemd-analyze verify, and the
// installed program must run. A second install (an upgrade) keeps the edited config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../support/ports.ts';
// @ts-expect-error: plain JavaScript build scripts, run by node without a loader
import { buildBundle } from '../../agent/packaging/build.mjs';
// @ts-expect-error: plain JavaScript build scripts, run by node without a loader
import { RELEASE_FILES } from '../../agent/packaging/package.mjs';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');

function accounts(file: string): Map<string, string[]> {
  return new Map(readFileSync(file, 'utf8').trim().split('\n').map((line) => [line.split(':')[0]!, line.split(':')]));
}

function owned(path: string): { mode: string; uid: number; gid: number } {
  const stat = statSync(path);
  return { mode: (stat.mode & 0o7777).toString(8).padStart(4, '0'), uid: stat.uid, gid: stat.gid };
}

test('install.sh on a clean root: user, group, directories, config, unit; the installed agent runs; an upgrade keeps the config', async () => {
  const dir = await tempDir('install');
  try {
    const release = join(dir.path, 'lastgasp');
    for (const file of RELEASE_FILES as string[]) cpSync(join(ROOT, file), join(release, file));
    await buildBundle(join(release, 'dist'));
    symlinkSync(join(ROOT, 'node_modules'), join(release, 'node_modules'));
    const root = join(dir.path, 'root');
    const install = () => spawnSync('sh', [join(release, 'agent', 'packaging', 'install.sh')], { env: { ...process.env, ROOT: root }, encoding: 'utf8' });

    const first = install();
    assert.equal(first.status, 0, first.stdout + first.stderr);
    const user = accounts(join(root, 'etc', 'passwd')).get('lastgasp');
    assert.ok(user, 'no user lastgasp');
    assert.equal(user[5], '/var/lib/lastgasp');
    assert.equal(user[6], '/usr/sbin/nologin');
    const uid = Number(user[2]);
    const gid = Number(accounts(join(root, 'etc', 'group')).get('lastgasp')?.[2]);
    assert.equal(Number(user[3]), gid);
    assert.deepEqual(owned(join(root, 'etc', 'lastgasp')), { mode: '0750', uid: 0, gid });
    assert.deepEqual(owned(join(root, 'etc', 'lastgasp', 'keys')), { mode: '0700', uid, gid });
    assert.deepEqual(owned(join(root, 'var', 'lib', 'lastgasp')), { mode: '0750', uid, gid });
    assert.deepEqual(owned(join(root, 'run', 'lastgasp')), { mode: '0750', uid, gid });
    assert.deepEqual(owned(join(root, 'etc', 'lastgasp', 'agent.yaml')), { mode: '0640', uid: 0, gid });

    const unit = join(root, 'etc', 'systemd', 'system', 'lastgasp.service');
    const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    assert.equal(verify.status, 0, verify.stderr);
    assert.equal(verify.stderr.trim(), '', 'systemd-analyze verify found problems in the unit');
    assert.match(readFileSync(unit, 'utf8'), /^Type=notify$/m);

    const installed = join(root, 'opt', 'lastgasp', 'dist', 'lastgasp.mjs');
    const version = spawnSync(process.execPath, [installed, 'version'], { encoding: 'utf8' });
    assert.equal(version.stdout.trim(), `lastgasp ${JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version}`, version.stderr);
    const check = spawnSync(process.execPath, [installed, 'config', 'check', join(root, 'etc', 'lastgasp', 'agent.yaml')], { encoding: 'utf8' });
    assert.match(check.stdout + check.stderr, /agent\.yaml/);

    writeFileSync(join(root, 'etc', 'lastgasp', 'agent.yaml'), 'node: edited\n');
    const second = install();
    assert.equal(second.status, 0, second.stdout + second.stderr);
    assert.equal(readFileSync(join(root, 'etc', 'lastgasp', 'agent.yaml'), 'utf8'), 'node: edited\n');
    assert.equal(accounts(join(root, 'etc', 'passwd')).get('lastgasp')?.[2], String(uid));
  } finally {
    await dir.remove();
  }
});
