// Latency of one MCP `run_command` round trip for `true`, through the official SDK client over
// stdio: `corral mcp` (a cell per call: containment, tree kill, reaping, accounting) against
// bench/mcp_baseline_server.mjs (SDK server + child_process.exec, what popular MCP shell servers
// do), in one invocation, rounds interleaved so that drift on a shared machine hits both alike.
//
// Run (after `npm ci` in tests/mcp):  node bench/mcp_bench.mjs [--calls N] [--rounds R]
// CORRAL_BIN overrides build/corral; extra `corral mcp` flags go in CORRAL_MCP_ARGS.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const sdk = path.join(root, 'tests/mcp/node_modules/@modelcontextprotocol/sdk/dist/esm');
const { Client } = await import(`${sdk}/client/index.js`);
const { StdioClientTransport } = await import(`${sdk}/client/stdio.js`);

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const CALLS = arg('--calls', 100);
const ROUNDS = arg('--rounds', 5);
const CORRAL = process.env.CORRAL_BIN || path.join(root, 'build/corral');

async function connect(command, args) {
  const transport = new StdioClientTransport({ command, args, stderr: 'inherit' });
  const client = new Client({ name: 'corral-bench', version: '1.0.0' });
  await client.connect(transport);
  await client.listTools();
  return client;
}

const servers = {
  corral: await connect(CORRAL, ['mcp', ...(process.env.CORRAL_MCP_ARGS || '').split(' ').filter(Boolean)]),
  exec_baseline: await connect(process.execPath, [path.join(here, 'mcp_baseline_server.mjs')]),
};

async function roundTrip(client) {
  const t0 = process.hrtime.bigint();
  const r = await client.callTool({ name: 'run_command', arguments: { command: 'true' } });
  const ns = Number(process.hrtime.bigint() - t0);
  if (r.isError) throw new Error(`run_command failed: ${JSON.stringify(r)}`);
  return ns / 1e6;
}

const samples = { corral: [], exec_baseline: [] };
for (const name of Object.keys(samples)) {
  for (let i = 0; i < 10; ++i) await roundTrip(servers[name]);  // warm-up
}
for (let r = 0; r < ROUNDS; ++r) {
  for (const name of Object.keys(samples)) {
    for (let i = 0; i < CALLS; ++i) samples[name].push(await roundTrip(servers[name]));
  }
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
console.log(`MCP run_command round trip for \`true\` (${ROUNDS} rounds x ${CALLS} calls, sequential)`);
for (const [name, xs] of Object.entries(samples)) {
  console.log(`  ${name.padEnd(14)} median ${pct(xs, 50).toFixed(3)} ms  p90 ${pct(xs, 90).toFixed(3)} ms  ` +
              `p99 ${pct(xs, 99).toFixed(3)} ms`);
}
const ratio = pct(samples.corral, 50) / pct(samples.exec_baseline, 50);
console.log(`  ratio corral / exec_baseline (median): ${ratio.toFixed(2)}` +
            `  (${ratio < 1 ? 'corral faster' : 'corral slower'})`);
for (const c of Object.values(servers)) await c.close();
