// The baseline of bench/mcp_bench.mjs: a minimal stdio MCP server with one `run_command` tool
// that runs the command with Node's child_process.exec, the way popular MCP shell servers do
// (SDK Server + exec with a timeout). It stops waiting at the timeout but kills only the shell,
// never its tree; it is here for its speed, not as an example.
import { exec } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const sdk = path.resolve(path.dirname(fileURLToPath(import.meta.url)),
                         '../tests/mcp/node_modules/@modelcontextprotocol/sdk/dist/esm');
const { Server } = await import(`${sdk}/server/index.js`);
const { StdioServerTransport } = await import(`${sdk}/server/stdio.js`);
const { CallToolRequestSchema, ListToolsRequestSchema } = await import(`${sdk}/types.js`);

const server = new Server({ name: 'exec-baseline', version: '1.0.0' },
                          { capabilities: { tools: {} } });
server.setRequestHandler(ListToolsRequestSchema, async () => ({
  tools: [{
    name: 'run_command',
    description: 'Runs a shell command with child_process.exec',
    inputSchema: {
      type: 'object',
      properties: { command: { type: 'string' }, timeout_s: { type: 'number' } },
      required: ['command'],
    },
  }],
}));
server.setRequestHandler(CallToolRequestSchema, async (req) => {
  const { command, timeout_s = 60 } = req.params.arguments ?? {};
  return await new Promise((resolve) => {
    exec(command, { timeout: timeout_s * 1000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({
        content: [{ type: 'text', text: JSON.stringify({ exit_code: code, stdout, stderr }) }],
        isError: false,
      });
    });
  });
});
await server.connect(new StdioServerTransport());
