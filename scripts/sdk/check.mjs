// check.mjs runs the official OpenAI Node SDK against a gotune server and
// checks what an SDK user relies on: forced tool calls, structured output,
// streaming and typed errors for unknown fields.
//
//   node check.mjs URL [MODEL]
//
// URL is the server's address (http://127.0.0.1:8000, with or without /v1);
// MODEL is the model or adapter name to ask for (default: the last one that
// /v1/models lists, which is the last --adapter). The API key is taken from
// OPENAI_API_KEY when set. Each check prints one JSON line; the exit status is
// 1 when any check failed.
import OpenAI from "openai";

const [url, modelArg] = process.argv.slice(2);
if (!url) {
  console.error("usage: node check.mjs URL [MODEL]");
  process.exit(2);
}
const baseURL = url.replace(/\/+$/, "").replace(/\/v1$/, "") + "/v1";
const client = new OpenAI({
  baseURL,
  apiKey: process.env.OPENAI_API_KEY || "none",
  maxRetries: 0,
  timeout: 60_000,
});

// Kept small: the bundled tiny model has a 512-token context, and the
// tool definitions are part of the prompt.
const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Weather in a city",
      parameters: {
        type: "object",
        properties: { city: { enum: ["Paris", "Tokyo", "Lima"] }, unit: { enum: ["C", "F"] } },
        required: ["city", "unit"],
        additionalProperties: false,
      },
    },
  },
  {
    type: "function",
    function: {
      name: "convert",
      description: "Convert money",
      parameters: {
        type: "object",
        properties: { amount: { type: "integer" }, to: { enum: ["USD", "EUR"] } },
        required: ["amount", "to"],
        additionalProperties: false,
      },
    },
  },
];

const answerSchema = {
  type: "object",
  properties: {
    city: { type: "string", enum: ["Paris", "Tokyo", "Lima"] },
    sunny: { type: "boolean" },
    days: { type: "array", items: { type: "integer" }, maxItems: 3 },
  },
  required: ["city", "sunny", "days"],
  additionalProperties: false,
};

// validate returns the first way value breaks schema (the keywords used
// above), or "" when it matches.
function validate(value, schema, path = "$") {
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    return `${path}: ${JSON.stringify(value)} not in enum`;
  }
  const kind = Array.isArray(value) ? "array" : value === null ? "null" : typeof value;
  switch (schema.type) {
    case undefined:
      break;
    case "integer":
      if (!Number.isInteger(value)) return `${path}: not an integer`;
      break;
    case "number":
      if (kind !== "number") return `${path}: not a number`;
      break;
    default:
      if (kind !== schema.type) return `${path}: ${kind}, want ${schema.type}`;
  }
  if (kind === "object") {
    for (const key of schema.required || []) {
      if (!(key in value)) return `${path}: missing required ${key}`;
    }
    for (const [key, v] of Object.entries(value)) {
      const sub = schema.properties?.[key];
      if (sub) {
        const bad = validate(v, sub, `${path}.${key}`);
        if (bad) return bad;
      } else if (schema.additionalProperties === false) {
        return `${path}: extra key ${key}`;
      }
    }
  }
  if (kind === "array") {
    if (schema.maxItems !== undefined && value.length > schema.maxItems) return `${path}: too many items`;
    if (schema.items) {
      for (let i = 0; i < value.length; i++) {
        const bad = validate(value[i], schema.items, `${path}[${i}]`);
        if (bad) return bad;
      }
    }
  }
  return "";
}

// checkToolCalls returns "" when calls are well-formed calls of tools.
function checkToolCalls(calls) {
  if (!Array.isArray(calls) || calls.length === 0) return "no tool_calls";
  for (const call of calls) {
    if (call.type !== "function") return `tool call type ${call.type}`;
    if (!call.id) return "tool call without id";
    const tool = tools.find((t) => t.function.name === call.function?.name);
    if (!tool) return `tool call names ${JSON.stringify(call.function?.name)}, not an offered tool`;
    let args;
    try {
      args = JSON.parse(call.function.arguments);
    } catch (e) {
      return `arguments do not parse: ${e.message}: ${call.function.arguments}`;
    }
    const bad = validate(args, tool.function.parameters);
    if (bad) return `arguments of ${tool.function.name} do not match its schema: ${bad}`;
  }
  return "";
}

let failed = 0;
async function check(name, fn) {
  let line;
  try {
    const detail = await fn();
    line = { check: name, ok: true, ...(detail === undefined ? {} : { detail }) };
  } catch (e) {
    failed++;
    line = { check: name, ok: false, error: String(e?.message ?? e) };
  }
  console.log(JSON.stringify(line));
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// A reasoning template (qwen3) lets the model think first, in free text, and
// only the answer after </think> is constrained: a tiny model can spend every
// token thinking. vLLM's extension turns thinking off so the answer starts at
// once, as gotune's README says.
const noThinking = { enable_thinking: false };

const weather = [{ role: "user", content: "What's the weather in Tokyo right now?" }];

let model = modelArg;
await check("models", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert(ids.length > 0, "no models listed");
  model ??= ids[ids.length - 1];
  assert(ids.includes(model), `${model} not in ${ids}`);
  return { ids, model };
});
model ??= "default";

await check("tool_choice_required", async () => {
  const r = await client.chat.completions.create({
    model,
    messages: weather,
    tools,
    tool_choice: "required",
    chat_template_kwargs: noThinking,
    temperature: 0,
    max_tokens: 100,
  });
  const choice = r.choices[0];
  const msg = choice.message;
  assert(r.model === model, `model ${r.model}, want ${model}`);
  assert("content" in msg && msg.content === null, `content ${JSON.stringify(msg.content)}, want null`);
  assert(choice.finish_reason === "tool_calls", `finish_reason ${choice.finish_reason}`);
  const bad = checkToolCalls(msg.tool_calls);
  assert(!bad, bad);
  return msg.tool_calls.map((c) => ({ name: c.function.name, arguments: JSON.parse(c.function.arguments) }));
});

await check("tool_choice_named", async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "How much is 100 USD in EUR?" }],
    tools,
    tool_choice: { type: "function", function: { name: "convert" } },
    chat_template_kwargs: noThinking,
    temperature: 0,
    max_tokens: 100,
  });
  const msg = r.choices[0].message;
  assert(msg.content === null, `content ${JSON.stringify(msg.content)}, want null`);
  const bad = checkToolCalls(msg.tool_calls);
  assert(!bad, bad);
  assert(msg.tool_calls.every((c) => c.function.name === "convert"), "a call of another tool");
  return msg.tool_calls.map((c) => ({ name: c.function.name, arguments: JSON.parse(c.function.arguments) }));
});

await check("response_format_json_schema", async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Pick a city and say whether it is sunny there." }],
    response_format: { type: "json_schema", json_schema: { name: "answer", strict: true, schema: answerSchema } },
    chat_template_kwargs: noThinking,
    temperature: 0,
    max_tokens: 300,
  });
  const choice = r.choices[0];
  assert(choice.finish_reason === "stop", `finish_reason ${choice.finish_reason}`);
  const value = JSON.parse(choice.message.content);
  const bad = validate(value, answerSchema);
  assert(!bad, bad);
  return value;
});

// The usual next turn: the assistant's tool-call message goes back as the
// SDK returned it (content null), with the tool's result.
await check("tool_result_round_trip", async () => {
  const first = await client.chat.completions.create({
    model,
    messages: weather,
    tools,
    tool_choice: "required",
    chat_template_kwargs: noThinking,
    temperature: 0,
    max_tokens: 100,
  });
  const call = first.choices[0].message;
  const r = await client.chat.completions.create({
    model,
    messages: [
      ...weather,
      call,
      { role: "tool", tool_call_id: call.tool_calls[0].id, content: JSON.stringify({ temperature: 21 }) },
    ],
    tools,
    chat_template_kwargs: noThinking,
    temperature: 0,
    max_tokens: 16,
  });
  const choice = r.choices[0];
  assert(["stop", "length", "tool_calls"].includes(choice.finish_reason), `finish_reason ${choice.finish_reason}`);
  return { finish_reason: choice.finish_reason, content: choice.message.content };
});

// Streaming: the chunks of a greedy reply add up to the reply the same
// request gets without streaming, and the usage chunk counts its tokens.
async function checkStream(request) {
  const whole = await client.chat.completions.create(request);
  const stream = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
  let text = "";
  let reasoning = "";
  let chunks = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? "";
      reasoning += c.delta?.reasoning_content ?? "";
      finish = c.finish_reason ?? finish;
    }
  }
  const want = whole.choices[0];
  assert(chunks > 2, `${chunks} chunks`);
  assert(text === (want.message.content ?? ""), `streamed ${JSON.stringify(text)}, whole ${JSON.stringify(want.message.content)}`);
  assert(
    reasoning === (want.message.reasoning_content ?? ""),
    `streamed reasoning ${JSON.stringify(reasoning)}, whole ${JSON.stringify(want.message.reasoning_content)}`,
  );
  assert(finish === want.finish_reason, `finish_reason ${finish}, whole ${want.finish_reason}`);
  assert(usage && usage.completion_tokens === whole.usage.completion_tokens, `usage ${JSON.stringify(usage)}`);
  return { chunks, text, reasoning, finish_reason: finish, usage };
}

await check("stream_text", () =>
  checkStream({ model, messages: [{ role: "user", content: "Name the capital of France." }], temperature: 0, max_tokens: 24 }),
);

// A streamed structured reply is never empty: it must arrive whole and valid.
await check("stream_json_schema", async () => {
  const r = await checkStream({
    model,
    messages: [{ role: "user", content: "Pick a city and say whether it is sunny there." }],
    response_format: { type: "json_schema", json_schema: { name: "answer", strict: true, schema: answerSchema } },
    chat_template_kwargs: noThinking,
    temperature: 0,
    max_tokens: 300,
  });
  assert(r.chunks > 3, `${r.chunks} chunks`);
  const bad = validate(JSON.parse(r.text), answerSchema);
  assert(!bad, bad);
  return r;
});

await check("stream_tool_calls", async () => {
  const stream = await client.chat.completions.create({
    model,
    messages: weather,
    tools,
    tool_choice: "required",
    chat_template_kwargs: noThinking,
    temperature: 0,
    max_tokens: 100,
    stream: true,
  });
  const calls = [];
  let content = "";
  let finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      content += c.delta?.content ?? "";
      finish = c.finish_reason ?? finish;
      for (const d of c.delta?.tool_calls ?? []) {
        const call = (calls[d.index] ??= { id: "", type: "", function: { name: "", arguments: "" } });
        call.id += d.id ?? "";
        call.type = d.type ?? call.type;
        call.function.name += d.function?.name ?? "";
        call.function.arguments += d.function?.arguments ?? "";
      }
    }
  }
  assert(content === "", `streamed content ${JSON.stringify(content)} beside the tool call`);
  assert(finish === "tool_calls", `finish_reason ${finish}`);
  const bad = checkToolCalls(calls);
  assert(!bad, bad);
  return calls.map((c) => c.function.name);
});

// expect400 sends body and wants an APIError with status 400 whose message
// names field.
async function expect400(body, field) {
  try {
    await client.chat.completions.create({ model, max_tokens: 4, ...body });
  } catch (e) {
    assert(e instanceof OpenAI.APIError, `${e?.constructor?.name}: ${e?.message}`);
    assert(e.status === 400, `status ${e.status}: ${e.message}`);
    assert(e instanceof OpenAI.BadRequestError, "not a BadRequestError");
    assert(e.message.includes(field), `message does not name ${field}: ${e.message}`);
    return { status: e.status, message: e.message, param: e.param ?? null };
  }
  throw new Error(`unknown field ${field} was accepted`);
}

await check("unknown_field_400", () =>
  expect400({ messages: weather, temprature: 0.2 }, "temprature"),
);

await check("unknown_nested_field_400", () =>
  expect400(
    {
      messages: weather,
      tools: [{ ...tools[0], function: { ...tools[0].function, strictt: true } }],
    },
    "strictt",
  ),
);

await check("unknown_message_field_400", () =>
  expect400({ messages: [{ role: "user", content: "Hi", nmae: "x" }] }, "nmae"),
);

await check("unknown_template_kwarg_400", () =>
  expect400({ messages: weather, chat_template_kwargs: { enable_thinkng: false } }, "enable_thinkng"),
);

process.exit(failed ? 1 : 0);
