// `internlm serve` driven by the official `openai` npm client, unchanged: if these pass, the
// server's JSON, SSE framing and error objects are what OpenAI clients expect.
// Run by ctest as `node --test tests/node/` with INTERNLM_BIN and INTERNLM_TEST_TMP set.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, openSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import Ajv from 'ajv';

const BIN = process.env.INTERNLM_BIN ?? 'build/internlm';
// INTERNLM_TEST_TP=N: the same tests against `mpirun -np N internlm serve --tp N` (one thread a rank;
// as root on a 2-core CI machine: root allowed, more ranks than cores).
const TP = Number(process.env.INTERNLM_TEST_TP ?? '1');
const TMP = path.join(process.env.INTERNLM_TEST_TMP ?? '/tmp/internlm-test', TP > 1 ? `node-tp${TP}` : 'node');
const KEY = 'node-test-key';

let server;
let baseURL;
let client;

// Starts the server on a free port (--port 0) and resolves with the port it prints.
function startServer(model) {
  const log = openSync(path.join(TMP, 'server.log'), 'w');
  const args = ['serve', '--model', model, '--port', '0', '--threads', TP > 1 ? '1' : '2', '--api-key', KEY,
    '--max-model-len', '2048'];
  server = TP > 1
    ? spawn('mpirun', ['--oversubscribe', '--bind-to', 'none', '-np', String(TP), BIN, ...args, '--tp', String(TP)], {
      stdio: ['ignore', 'pipe', log],
      env: { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' },
    })
    : spawn(BIN, args, { stdio: ['ignore', 'pipe', log] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start within 60 s')), 60_000);
    let out = '';
    server.stdout.on('data', (d) => {
      out += d.toString();
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    server.on('exit', (code) => reject(new Error(`server exited early: ${code}`)));
  });
}

before(async () => {
  rmSync(TMP, { recursive: true, force: true });
  mkdirSync(TMP, { recursive: true });
  const model = path.join(TMP, 'tiny');
  execFileSync(BIN, ['synth', '--preset', 'tiny', '--seed', '21', '--out', model], { stdio: 'ignore' });
  const port = await startServer(model);
  baseURL = `http://127.0.0.1:${port}/v1`;
  client = new OpenAI({ apiKey: KEY, baseURL, maxRetries: 0, timeout: 60_000 });
});

// Under mpirun: the pid of rank 0 of this test's server (its command line names this test's
// model directory; Open MPI puts the rank in its environment).
function rankZeroPid() {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmd.includes(path.join(TMP, 'tiny')) || cmd.startsWith('mpirun')) continue;
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes('OMPI_COMM_WORLD_RANK=0')) return Number(pid);
    } catch {
      // the process ended meanwhile
    }
  }
  return null;
}

after(async () => {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((resolve) => server.on('exit', resolve));
  // SIGTERM goes to serve itself: under mpirun, to rank 0 (mpirun would SIGKILL a long drain).
  if (TP > 1) {
    const pid = rankZeroPid();
    assert.ok(pid, 'rank 0 of the mpirun job found');
    process.kill(pid, 'SIGTERM');
  } else {
    server.kill('SIGTERM');
  }
  assert.equal(await exited, 0, 'serve exits 0 on SIGTERM (every rank, under mpirun)');
});

async function tokenCount(body) {
  const r = await fetch(baseURL.replace(/\/v1$/, '/tokenize'), {
    method: 'POST', headers: { Authorization: `Bearer ${KEY}` }, body: JSON.stringify(body),
  });
  assert.equal(r.status, 200);
  return (await r.json()).count;
}

const user = (content) => [{ role: 'user', content }];

test('models.list names the checkpoint', async () => {
  const page = await client.models.list();
  assert.deepEqual(page.data.map((m) => m.id), ['tiny']);
});

test('chat completion: shape and usage equal to the real token counts', async () => {
  const messages = [{ role: 'system', content: 'be brief' }, ...user('Hello!')];
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 7, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(['stop', 'length'].includes(c.finish_reason));
  assert.equal(r.usage.prompt_tokens, await tokenCount({ messages }));
  if (c.finish_reason === 'length') assert.equal(r.usage.completion_tokens, 7);
  else assert.ok(r.usage.completion_tokens <= 7);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('completions: a string prompt and a batch of prompts', async () => {
  const r = await client.completions.create({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.usage.prompt_tokens, await tokenCount({ prompt: 'Once upon a time' }));
  const b = await client.completions.create({ model: 'tiny', prompt: ['a', 'b c'], max_tokens: 3, temperature: 0 });
  assert.deepEqual(b.choices.map((c) => c.index), [0, 1]);
  const again = await client.completions.create({ model: 'tiny', prompt: 'a', max_tokens: 3, temperature: 0 });
  assert.equal(b.choices[0].text, again.choices[0].text);
});

test('streaming chat with include_usage equals the whole response', async () => {
  const body = { model: 'tiny', messages: user('Tell me a story'), max_tokens: 12, temperature: 0 };
  const whole = await client.chat.completions.create(body);
  const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish = null;
  let usage = null;
  let first = true;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) {
      assert.deepEqual(chunk.choices, []);
      usage = chunk.usage;
      continue;
    }
    const ch = chunk.choices[0];
    if (first) assert.equal(ch.delta.role, 'assistant');
    first = false;
    text += ch.delta.content ?? '';
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.deepEqual(
    [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens],
    [whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens],
  );
});

test('streaming completions', async () => {
  const body = { model: 'tiny', prompt: 'x y z', max_tokens: 8, temperature: 0 };
  const whole = await client.completions.create(body);
  let text = '';
  for await (const chunk of await client.completions.create({ ...body, stream: true })) text += chunk.choices[0]?.text ?? '';
  assert.equal(text, whole.choices[0].text);
});

test('stop strings end the reply before them, streaming or not', async () => {
  const body = { model: 'tiny', messages: user('Say something long'), max_tokens: 24, temperature: 0 };
  const full = (await client.chat.completions.create(body)).choices[0].message.content;
  assert.ok(full.length >= 6, full);
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 2);
  const expected = full.slice(0, full.indexOf(stop));
  const r = await client.chat.completions.create({ ...body, stop: [stop] });
  assert.equal(r.choices[0].message.content, expected);
  assert.equal(r.choices[0].finish_reason, 'stop');
  let text = '';
  let finish = null;
  for await (const chunk of await client.chat.completions.create({ ...body, stop, stream: true })) {
    text += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(text, expected);
  assert.equal(finish, 'stop');
});

test('logprobs: chat top_logprobs and completions logprobs', async () => {
  const r = await client.chat.completions.create({
    model: 'tiny', messages: user('hi'), max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3,
  });
  const content = r.choices[0].logprobs.content;
  assert.ok(content.length >= 1);
  for (const t of content) {
    assert.equal(typeof t.token, 'string');
    assert.ok(t.logprob <= 0);
    assert.ok(Array.isArray(t.bytes));
    assert.equal(t.top_logprobs.length, 3);
    // Greedy: the chosen token is the most likely one.
    assert.ok(t.top_logprobs[0].logprob >= t.logprob - 1e-6);
  }
  const c = await client.completions.create({ model: 'tiny', prompt: 'hello', max_tokens: 3, temperature: 0, logprobs: 2 });
  const lp = c.choices[0].logprobs;
  assert.equal(lp.tokens.length, lp.token_logprobs.length);
  assert.equal(lp.text_offset.length, lp.tokens.length);
  assert.ok(Object.keys(lp.top_logprobs[0]).length >= 1);
});

test('logit_bias -100 on the greedy token changes it; +100 forces one', async () => {
  const ask = (extra) => client.chat.completions.create({
    model: 'tiny', messages: user('choose'), max_tokens: 1, temperature: 0, logprobs: true, ...extra,
  });
  const greedy = (await ask({})).choices[0];
  const [id] = (await (await fetch(baseURL.replace(/\/v1$/, '/tokenize'), {
    method: 'POST', headers: { Authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ prompt: greedy.message.content, add_special_tokens: false }),
  })).json()).tokens;
  const moved = (await ask({ logit_bias: { [id]: -100 } })).choices[0];
  assert.notEqual(moved.logprobs.content[0].token, greedy.logprobs.content[0].token);
  const forced = await client.completions.create({
    model: 'tiny', prompt: 'x', max_tokens: 3, temperature: 1, logit_bias: { 1000: 100 }, logprobs: 0,
  });
  const t = forced.choices[0].logprobs.tokens;
  assert.equal(t.length, 3);
  assert.ok(t.every((x) => x === t[0]));
});

test('completions echo + logprobs: the prompt first, its first token unscored', async () => {
  const c = await client.completions.create({
    model: 'tiny', prompt: 'The quick brown fox', max_tokens: 2, temperature: 0, echo: true, logprobs: 1,
  });
  const ch = c.choices[0];
  assert.ok(ch.text.startsWith('The quick brown fox'));
  const lp = ch.logprobs;
  assert.equal(lp.tokens.length, c.usage.prompt_tokens + 2);
  assert.equal(lp.token_logprobs[0], null);
  assert.ok(lp.token_logprobs.slice(1).every((x) => typeof x === 'number' && x <= 0));
});

test('n=2 gives two choices, each counted', async () => {
  const r = await client.chat.completions.create({
    model: 'tiny', messages: user('pick'), max_tokens: 6, temperature: 1.0, seed: 42, n: 2,
  });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
  const single = await client.chat.completions.create({ model: 'tiny', messages: user('pick'), max_tokens: 6, temperature: 0 });
  assert.equal(r.usage.prompt_tokens, single.usage.prompt_tokens);  // the prompt counts once
  assert.ok(r.usage.completion_tokens >= 2 && r.usage.completion_tokens <= 12);
});

test('errors raise the client error classes', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'tiny', messages: [], max_tokens: 2 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.status, 400);
    assert.equal(e.error?.param ?? e.param, 'messages');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: 'tiny', messages: user('x'), max_tokens: 100000 }),
    (e) => e instanceof OpenAI.BadRequestError && /2048/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages: user('x'), max_tokens: 2 }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'model_not_found');
  const wrong = new OpenAI({ apiKey: 'wrong', baseURL, maxRetries: 0 });
  await assert.rejects(wrong.chat.completions.create({ model: 'tiny', messages: user('x'), max_tokens: 2 }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  // The server keeps serving.
  const ok = await client.chat.completions.create({ model: 'tiny', messages: user('still there?'), max_tokens: 2 });
  assert.equal(ok.choices.length, 1);
});

// --- tool calls and structured output (ajv validates what the server promised) ---

const ajv = new Ajv({ strict: false });
const weather = {
  type: 'object',
  properties: {
    city: { type: 'string', maxLength: 10 },
    days: { type: 'integer', minimum: 1, maximum: 7 },
    unit: { enum: ['C', 'F'] },
  },
  required: ['city', 'days'],
  additionalProperties: false,
};
const tools = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: weather, strict: true } },
  {
    type: 'function',
    function: {
      name: 'search', strict: true,
      parameters: { type: 'object', properties: { q: { type: 'string', maxLength: 12 } }, required: ['q'], additionalProperties: false },
    },
  },
];
const paramsOf = Object.fromEntries(tools.map((t) => [t.function.name, ajv.compile(t.function.parameters)]));

function assertValidCall(call, names) {
  assert.equal(call.type, 'function');
  assert.match(call.id, /^call_/);
  assert.ok(names.includes(call.function.name), call.function.name);
  const validate = paramsOf[call.function.name];
  assert.ok(validate(JSON.parse(call.function.arguments)), JSON.stringify(validate.errors) + call.function.arguments);
}

test('tools: tool_choice required and named give valid calls at temperature 1', async () => {
  for (let seed = 0; seed < 6; seed++) {
    const r = await client.chat.completions.create({
      model: 'tiny', messages: user('weather in Paris?'), tools, tool_choice: 'required', temperature: 1, seed, max_tokens: 300,
    });
    const ch = r.choices[0];
    assert.equal(ch.finish_reason, 'tool_calls');
    assert.equal(ch.message.tool_calls.length, 1);
    assertValidCall(ch.message.tool_calls[0], ['get_weather', 'search']);
  }
  const named = await client.chat.completions.create({
    model: 'tiny', messages: user('find cats'), tools, temperature: 1, seed: 3, max_tokens: 300,
    tool_choice: { type: 'function', function: { name: 'search' } },
  });
  assertValidCall(named.choices[0].message.tool_calls[0], ['search']);
});

test('tools: a streamed call assembled from deltas equals the whole reply at temperature 0', async () => {
  const body = {
    model: 'tiny', messages: user('weather?'), tools, temperature: 0, max_tokens: 300,
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  };
  const whole = (await client.chat.completions.create(body)).choices[0];
  const stream = await client.chat.completions.create({ ...body, stream: true });
  const calls = [];
  let finish = null;
  for await (const chunk of stream) {
    for (const ch of chunk.choices) {
      finish = ch.finish_reason ?? finish;
      for (const t of ch.delta.tool_calls ?? []) {
        calls[t.index] ??= { name: '', arguments: '' };
        if (t.id) calls[t.index].name = t.function.name;
        calls[t.index].arguments += t.function?.arguments ?? '';
      }
    }
  }
  assert.equal(finish, 'tool_calls');
  assert.deepEqual(calls, [{ name: whole.message.tool_calls[0].function.name, arguments: whole.message.tool_calls[0].function.arguments }]);
  // The client's own stream helper assembles the same call.
  const runner = client.chat.completions.stream(body);
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.tool_calls[0].function.arguments, whole.message.tool_calls[0].function.arguments);
});

test('tools: a call and its result round trip; parse() reads strict tool arguments', async () => {
  const first = await client.chat.completions.parse({
    model: 'tiny', messages: user('weather in Paris?'), tools, tool_choice: 'required', temperature: 0, max_tokens: 300,
  });
  const call = first.choices[0].message.tool_calls[0];
  assert.deepEqual(call.function.parsed_arguments, JSON.parse(call.function.arguments));
  const next = await client.chat.completions.create({
    model: 'tiny', tools, temperature: 0, max_tokens: 4,
    messages: [...user('weather in Paris?'), first.choices[0].message,
      { role: 'tool', tool_call_id: call.id, content: '{"temperature": 22}' }],
  });
  assert.equal(next.choices.length, 1);
  assert.ok(next.usage.prompt_tokens > first.usage.prompt_tokens);
});

test('tools: bad tools are BadRequestErrors naming the field', async () => {
  await assert.rejects(client.chat.completions.create({
    model: 'tiny', messages: user('x'), tools, tool_choice: { type: 'function', function: { name: 'absent' } },
  }), (e) => e instanceof OpenAI.BadRequestError && e.param === 'tool_choice.function.name');
  await assert.rejects(client.chat.completions.create({
    model: 'tiny', messages: user('x'), tools: [{ type: 'function', function: { name: 'f', parameters: 'object' } }],
  }), (e) => e instanceof OpenAI.BadRequestError && e.param === 'tools[0].function.parameters');
});

// Random schemas as the python test draws them.
function genSchema(rand, depth = 0) {
  const kinds = ['string', 'integer', 'boolean', 'null', 'enum', 'number', ...(depth < 2 ? ['object', 'array', 'anyOf'] : [])];
  const k = kinds[Math.floor(rand() * kinds.length)];
  const int = (a, b) => a + Math.floor(rand() * (b - a + 1));
  switch (k) {
    case 'string': return { type: 'string', maxLength: int(0, 12) };
    case 'integer': { const lo = int(-50, 50); return { type: 'integer', minimum: lo, maximum: lo + int(0, 300) }; }
    case 'enum': return { enum: ['red', 'green', 7, null, true, 'a b'].slice(int(0, 3), 4 + int(0, 2)) };
    case 'object': {
      const properties = {};
      for (let i = 0, n = int(1, 4); i < n; i++) properties[`p${i}_${int(0, 99)}`] = genSchema(rand, depth + 1);
      const required = Object.keys(properties).filter(() => rand() < 0.6);
      return { type: 'object', properties, required, additionalProperties: false };
    }
    case 'array': return { type: 'array', items: genSchema(rand, depth + 1), maxItems: int(0, 3) };
    case 'anyOf': return { anyOf: [genSchema(rand, depth + 1), genSchema(rand, depth + 1)] };
    default: return { type: k };
  }
}

function mulberry32(a) {
  return () => {
    a |= 0; a = (a + 0x6D2B79F5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('response_format json_schema: 50 generated schemas at temperature 1 all validate', async () => {
  const rand = mulberry32(7);
  for (let i = 0; i < 50; i++) {
    const schema = {
      type: 'object', properties: { item: genSchema(rand), n: { type: 'integer', minimum: 0, maximum: 9 } },
      required: ['item', 'n'], additionalProperties: false,
    };
    const r = await client.chat.completions.create({
      model: 'tiny', messages: user('answer'), temperature: 1, seed: i, max_tokens: 1500,
      response_format: { type: 'json_schema', json_schema: { name: `s${i}`, schema, strict: true } },
    });
    const validate = ajv.compile(schema);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(validate(JSON.parse(r.choices[0].message.content)), `${JSON.stringify(schema)} ${r.choices[0].message.content}`);
  }
});

test('response_format json_object and chat.completions.parse with a JSON schema', async () => {
  // json_object bounds nothing and random weights write long keys: closing quotes and braces
  // get a bias so that the reply ends well within max_tokens.
  const bias = {};
  for (const c of ['"', '}']) {
    const r = await fetch(baseURL.replace(/\/v1$/, '/tokenize'), {
      method: 'POST', headers: { Authorization: `Bearer ${KEY}` }, body: JSON.stringify({ prompt: c, add_special_tokens: false }),
    });
    bias[(await r.json()).tokens[0]] = 6;
  }
  const obj = await client.chat.completions.create({
    model: 'tiny', messages: user('x'), temperature: 1, seed: 1, max_tokens: 1500, response_format: { type: 'json_object' },
    logit_bias: bias,
  });
  assert.equal(obj.choices[0].finish_reason, 'stop');
  const value = JSON.parse(obj.choices[0].message.content);
  assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value));
  const schema = { type: 'object', properties: { ok: { type: 'boolean' }, n: { type: 'integer', minimum: 0, maximum: 3 } },
    required: ['ok', 'n'], additionalProperties: false };
  const parsed = await client.chat.completions.parse({
    model: 'tiny', messages: user('answer'), temperature: 1, seed: 4, max_tokens: 200,
    response_format: { type: 'json_schema', json_schema: { name: 'answer', schema, strict: true } },
  });
  const msg = parsed.choices[0].message;
  assert.deepEqual(msg.parsed, JSON.parse(msg.content));
  assert.ok(ajv.compile(schema)(msg.parsed));
});
