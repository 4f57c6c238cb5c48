// Drives a running `mlabench serve` with the official openai npm client and checks the objects it parses.
// Usage: node client.mjs BASE_URL MODEL_ID. Exits non-zero (with the failed check) on any mismatch.
import assert from "node:assert/strict";
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60_000 });

async function collect(stream, pick) {
  let text = "";
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += pick(c) ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish, usage };
}

const models = await client.models.list();
assert.equal(models.data[0].id, model, "/v1/models lists the served model");

// Completions: plain, then streamed; the stream concatenates to the same text.
const params = { model, prompt: "Once upon a time", max_tokens: 12, temperature: 0 };
const c = await client.completions.create(params);
assert.equal(c.object, "text_completion");
assert.equal(typeof c.choices[0].text, "string");
assert.ok(["stop", "length"].includes(c.choices[0].finish_reason));
assert.ok(c.usage.prompt_tokens > 0 && c.usage.completion_tokens > 0);
assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens);
const cs = await collect(
  await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } }),
  (ch) => ch.text,
);
assert.equal(cs.text, c.choices[0].text, "streamed completion equals the plain one");
assert.equal(cs.finish, c.choices[0].finish_reason);
assert.equal(cs.usage.completion_tokens, c.usage.completion_tokens);

// Chat: plain and streamed.
const chatParams = { model, messages: [{ role: "user", content: "Hello there" }], max_tokens: 10, temperature: 0 };
const chat = await client.chat.completions.create(chatParams);
assert.equal(chat.object, "chat.completion");
assert.equal(chat.choices[0].message.role, "assistant");
assert.equal(typeof chat.choices[0].message.content, "string");
const chatStream = await collect(await client.chat.completions.create({ ...chatParams, stream: true }),
  (ch) => ch.delta.content);
assert.equal(chatStream.text, chat.choices[0].message.content, "streamed chat equals the plain one");

// Prompt logprobs the way lm-evaluation-harness asks: echo, logprobs, no new tokens.
const prompt = "The capital of France is Paris";
const lp = await client.completions.create({ model, prompt, max_tokens: 0, echo: true, logprobs: 2, temperature: 0 });
const l = lp.choices[0].logprobs;
assert.equal(lp.choices[0].text, prompt);
assert.equal(l.tokens.length, lp.usage.prompt_tokens);
assert.equal(l.token_logprobs[0], null, "the first token has no logprob");
for (let i = 1; i < l.tokens.length; i++) {
  assert.ok(l.token_logprobs[i] <= 0, `token_logprobs[${i}] = ${l.token_logprobs[i]}`);
  const top = Object.values(l.top_logprobs[i]);
  assert.ok(top.length >= 1 && top.length <= 2);
  assert.ok(Math.max(...top) >= l.token_logprobs[i] - 1e-9, "the top alternative is at least the token's");
  assert.ok(l.text_offset[i] >= l.text_offset[i - 1]);
}

// An error comes back as the client's APIError with OpenAI's fields.
await assert.rejects(
  client.completions.create({ model, prompt: "x", temperature: 7 }),
  (e) => e instanceof OpenAI.APIError && e.status === 400 && e.param === "temperature",
);
console.log("serve_client: all checks passed");
