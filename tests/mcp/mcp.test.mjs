// `corral mcp` against the official MCP TypeScript SDK client (StdioClientTransport), as an MCP
// host would use it. Every test that starts commands tags them with a marker variable and checks
// /proc afterwards: no process of theirs may be left, whatever happened to the call.
//
// Run: (cd tests/mcp && npm ci && CORRAL_BIN=$PWD/../../build/corral node --test)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CORRAL = process.env.CORRAL_BIN || path.resolve(here, '../../build/corral');

let markerSeq = 0;
function newMarker() {
  return `corral-mcp-test-${process.pid}-${Date.now()}-${++markerSeq}`;
}

// PIDs of live (non-zombie) processes whose environment holds `marker`.
function procsWithEnv(marker) {
  const found = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'latin1');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue;
      if (fs.readFileSync(`/proc/${d}/environ`, 'latin1').includes(marker)) found.push(Number(d));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

async function waitUntil(pred, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Fails the test (after killing them, by pid) if any process carrying the marker is alive.
function assertNoneLeft(marker) {
  const left = procsWithEnv(marker);
  for (const pid of left) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  assert.deepEqual(left, [], `processes left behind: ${left}`);
}

const servers = [];
async function connect(args = []) {
  const transport = new StdioClientTransport({
    command: CORRAL,
    // CORRAL_MCP_ARGS runs the suite under another backend, e.g. '--containment pgroup'.
    args: ['mcp', '--grace', '300ms', ...(process.env.CORRAL_MCP_ARGS || '').split(' ').filter(Boolean), ...args],
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (b) => (stderr += b));
  const client = new Client({ name: 'corral-test', version: '1.0.0' });
  await client.connect(transport);
  // Listing once makes the SDK validate every structuredContent against its outputSchema.
  await client.listTools();
  const s = { client, transport, proc: transport._process, stderr: () => stderr };
  servers.push(s);
  return s;
}

after(async () => {
  for (const s of servers) await s.client.close().catch(() => {});
});

const shared = await connect(['--max-concurrent', '32', '--progress-interval', '200ms']);
const run = (args, opts) =>
  shared.client.callTool({ name: 'run_command', arguments: args }, undefined, opts);
const call = (name, args, opts) =>
  shared.client.callTool({ name, arguments: args }, undefined, opts);

test('negotiates the protocol and lists the six tools with schemas', async () => {
  assert.equal(shared.client.getServerVersion().name, 'corral');
  assert.ok(shared.client.getServerCapabilities().tools);
  const { tools } = await shared.client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), [
    'kill_command',
    'list_commands',
    'read_output',
    'run_command',
    'start_command',
    'wait_command',
  ]);
  for (const t of tools) {
    assert.equal(t.inputSchema.type, 'object', t.name);
    assert.equal(t.outputSchema.type, 'object', t.name);
  }
});

test('run_command returns the result object as structured content and as text', async () => {
  const r = await run({ command: 'echo hello; echo oops >&2; exit 3' });
  assert.equal(r.isError, false);
  const s = r.structuredContent;
  assert.equal(s.state, 'exited');
  assert.equal(s.exit_code, 3);
  assert.equal(s.stdout, 'hello\n');
  assert.equal(s.stderr, 'oops\n');
  assert.deepEqual(s.argv, ['/bin/sh', '-c', 'echo hello; echo oops >&2; exit 3']);
  assert.deepEqual(JSON.parse(r.content[0].text), s);

  const a = await run({ argv: ['printf', '%s-%s', 'a b', 'c'], stdin: 'ignored' });
  assert.equal(a.structuredContent.stdout, 'a b-c');

  const cat = await run({ argv: ['cat'], stdin: 'from stdin' });
  assert.equal(cat.structuredContent.stdout, 'from stdin');

  const env = await run({ command: 'echo "$FOO:$HOME_IS_SET"', env: { FOO: 'bar' } });
  assert.equal(env.structuredContent.stdout, 'bar:\n');

  const missing = await run({ argv: ['/nonexistent/program'] });
  assert.equal(missing.isError, false);
  assert.equal(missing.structuredContent.state, 'failed_to_start');
  assert.equal(missing.structuredContent.exit_code, 127);
  assert.match(missing.structuredContent.error, /nonexistent/);
});

test('a timeout returns quickly, says timed_out, and the whole tree is gone', async () => {
  const marker = newMarker();
  const t0 = Date.now();
  // Two background sleeps, one of them in its own session, and a TERM-ignoring shell.
  const r = await run({
    command: 'setsid sleep 30 & sleep 30 & trap "" TERM; sleep 30; wait',
    env: { CORRAL_TEST_MARK: marker },
    timeout_s: 0.5,
  });
  const elapsed = Date.now() - t0;
  const s = r.structuredContent;
  assert.equal(s.state, 'timed_out');
  assert.equal(s.reason, 'timeout');
  assert.ok(elapsed < 5000, `took ${elapsed} ms`);
  assert.ok(s.duration_s >= 0.5);
  assertNoneLeft(marker);  // the result comes only after the tree is gone: no waiting here
});

test('cancelling a call through an AbortSignal kills its tree', async () => {
  const marker = newMarker();
  const ac = new AbortController();
  const pending = run(
    { command: 'setsid sleep 60 & sleep 60', env: { CORRAL_TEST_MARK: marker }, timeout_s: 120 },
    { signal: ac.signal },
  );
  await waitUntil(() => procsWithEnv(marker).length >= 2, 'the command to start');
  ac.abort('test cancels');
  await assert.rejects(pending);
  await waitUntil(() => procsWithEnv(marker).length === 0, 'the tree to be gone', 5000);
  assert.deepEqual(await shared.client.ping(), {});  // still serving
  assertNoneLeft(marker);
});

test("the client's request timeout cancels the call and kills its tree", async () => {
  const marker = newMarker();
  const t0 = Date.now();
  await assert.rejects(
    run({ command: 'sleep 60 & sleep 60', env: { CORRAL_TEST_MARK: marker } }, { timeout: 500 }),
    /timed out/,
  );
  assert.ok(Date.now() - t0 < 2000);
  await waitUntil(() => procsWithEnv(marker).length === 0, 'the tree to be gone', 5000);
  // With resetTimeoutOnProgress, the progress notifications keep a longer call alive.
  const r = await run(
    { command: 'sleep 1.2; echo done' },
    { timeout: 500, resetTimeoutOnProgress: true, onprogress: () => {} },
  );
  assert.equal(r.structuredContent.stdout, 'done\n');
  assertNoneLeft(marker);
});

test('twenty calls run concurrently', async () => {
  const marker = newMarker();
  const t0 = Date.now();
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      run({ command: 'sleep 0.5; echo "$N"', env: { N: String(i), CORRAL_TEST_MARK: marker } }),
    ),
  );
  const elapsed = Date.now() - t0;
  results.forEach((r, i) => {
    assert.equal(r.structuredContent.state, 'exited');
    assert.equal(r.structuredContent.stdout, `${i}\n`);
  });
  assert.ok(elapsed < 5000, `20 x 0.5 s took ${elapsed} ms: not concurrent`);
  assertNoneLeft(marker);
});

test('progress notifications arrive while a call runs', async () => {
  const seen = [];
  const r = await run({ command: 'echo start; sleep 1.1' }, { onprogress: (p) => seen.push(p) });
  assert.equal(r.structuredContent.state, 'exited');
  assert.ok(seen.length >= 3, `only ${seen.length} progress notifications`);
  for (let i = 1; i < seen.length; ++i) assert.ok(seen[i].progress > seen[i - 1].progress);
  assert.match(seen.at(-1).message, /stdout 6 bytes/);
});

test('start_command + read_output + kill_command on a background command', async () => {
  const marker = newMarker();
  const started = await call('start_command', {
    command: 'echo first; echo second >&2; setsid sleep 60 & sleep 60',
    env: { CORRAL_TEST_MARK: marker },
    timeout_s: 120,
  });
  const id = started.structuredContent.id;
  assert.equal(started.structuredContent.state, 'running');
  assert.ok(started.structuredContent.pid > 0);

  const out = await waitUntil(async () => {
    const r = await call('read_output', { id });
    return r.structuredContent.data.includes('first') && r.structuredContent;
  }, 'output');
  assert.equal(out.done, false);
  assert.equal(out.eof, false);
  assert.equal(out.next_offset, 6);
  const err = await call('read_output', { id, stream: 'stderr' });
  assert.equal(err.structuredContent.data, 'second\n');
  // Pagination: two bytes at a time from an offset.
  const page = await call('read_output', { id, offset: 2, max_bytes: 2 });
  assert.equal(page.structuredContent.data, 'rs');
  assert.equal(page.structuredContent.next_offset, 4);

  const list = await call('list_commands', {});
  const mine = list.structuredContent.commands.find((c) => c.id === id);
  assert.equal(mine.state, 'running');

  const waited = await call('wait_command', { id, timeout_s: 0.2 });
  assert.equal(waited.structuredContent.done, false);

  const killed = await call('kill_command', { id });
  assert.equal(killed.structuredContent.done, true);
  assert.equal(killed.structuredContent.result.state, 'cancelled');
  assertNoneLeft(marker);

  const after = await call('read_output', { id });
  assert.equal(after.structuredContent.done, true);
  assert.equal(after.structuredContent.eof, true);
  assert.equal(after.structuredContent.data, 'first\n');
  const final = await call('wait_command', { id });
  assert.equal(final.structuredContent.result.stdout, 'first\n');
});

test('bad arguments are tool errors and the server carries on', async () => {
  const bad = [
    ['run_command', {}],
    ['run_command', { command: 'true', argv: ['true'] }],
    ['run_command', { command: 42 }],
    ['run_command', { argv: [] }],
    ['run_command', { command: 'true', timeout_s: -1 }],
    ['run_command', { command: 'true', cwd: '/nonexistent-dir' }],
    ['run_command', { command: 'true', bogus: 1 }],
    ['read_output', { id: 'no-such-id' }],
    ['read_output', { id: 'x', stream: 'stdin' }],
    ['wait_command', {}],
    ['kill_command', { id: 'no-such-id' }],
  ];
  for (const [name, args] of bad) {
    const r = await call(name, args);
    assert.equal(r.isError, true, `${name} ${JSON.stringify(args)}`);
    assert.ok(r.content[0].text.length > 0);
  }
  await assert.rejects(call('no_such_tool', {}), /unknown tool/);
  const ok = await run({ command: 'echo still here' });
  assert.equal(ok.structuredContent.stdout, 'still here\n');
});

test('policy: cwd outside --allow-cwd, timeout above --max-timeout, --max-concurrent', async () => {
  const tmp = fs.mkdtempSync('/tmp/corral-mcp-');
  const marker = newMarker();
  try {
    fs.mkdirSync(path.join(tmp, 'sub'));
    const s = await connect([
      '--allow-cwd', tmp, '--max-timeout', '5s', '--max-concurrent', '1',
    ]);
    const c = (args) => s.client.callTool({ name: 'run_command', arguments: args });
    const inside = await c({ command: 'pwd' });
    assert.equal(inside.structuredContent.stdout, `${fs.realpathSync(tmp)}\n`);
    const sub = await c({ command: 'pwd', cwd: path.join(tmp, 'sub') });
    assert.equal(sub.structuredContent.stdout, `${fs.realpathSync(tmp)}/sub\n`);
    const outside = await c({ command: 'pwd', cwd: '/' });
    assert.equal(outside.isError, true);
    assert.match(outside.content[0].text, /not allowed/);
    const escape = await c({ command: 'pwd', cwd: path.join(tmp, 'sub', '..', '..') });
    assert.equal(escape.isError, true);
    const long = await c({ command: 'true', timeout_s: 60 });
    assert.equal(long.isError, true);
    assert.match(long.content[0].text, /maximum/);

    const bg = await s.client.callTool({
      name: 'start_command',
      arguments: { command: 'sleep 60', env: { CORRAL_TEST_MARK: marker } },
    });
    const busy = await c({ command: 'true' });
    assert.equal(busy.isError, true);
    assert.match(busy.content[0].text, /too many commands/);
    await s.client.callTool({ name: 'kill_command', arguments: { id: bg.structuredContent.id } });
    const free = await c({ command: 'true' });
    assert.equal(free.isError, false);
    assertNoneLeft(marker);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('closing stdin tears down every cell and the server exits 0', async () => {
  const marker = newMarker();
  const s = await connect();
  await s.client.callTool({
    name: 'start_command',
    arguments: { command: 'setsid sleep 60 & sleep 60', env: { CORRAL_TEST_MARK: marker } },
  });
  const pending = s.client
    .callTool({ name: 'run_command', arguments: { command: 'sleep 60', env: { CORRAL_TEST_MARK: marker } } })
    .catch(() => 'closed');
  await waitUntil(() => procsWithEnv(marker).length >= 3, 'the commands to start');
  const proc = s.proc;
  const exited = new Promise((resolve) => proc.once('exit', (code, sig) => resolve({ code, sig })));
  const t0 = Date.now();
  await s.transport.close();  // ends stdin; SIGTERM only if the server is still there after 2 s
  const { code, sig } = await exited;
  assert.equal(sig, null, `server needed a signal to exit; stderr: ${s.stderr()}`);
  assert.equal(code, 0);
  assert.ok(Date.now() - t0 < 2000);
  // The pending call is answered (cancelled, reason shutdown) while stdout still works, or it
  // fails with the closed transport; either way it does not hang.
  const answer = await pending;
  if (answer !== 'closed') {
    assert.equal(answer.structuredContent.state, 'cancelled');
    assert.equal(answer.structuredContent.reason, 'shutdown');
  }
  assertNoneLeft(marker);
});
