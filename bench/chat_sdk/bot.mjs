// The comparison bot for bench 11: the AI mention bot the Chat SDK's documentation describes
// (subscribe, stream the model's text into the thread with Slack's native streaming), on the
// SDK's Redis state adapter (dedupe, thread locks, subscriptions), served by node:http.
// It reads the same settings Threadwise does, so the bench points both at the same fakes.
import http from "node:http";
import { Chat } from "chat";
import { createSlackAdapter } from "@chat-adapter/slack";
import { createRedisState } from "@chat-adapter/state-redis";
import { createOpenAI } from "@ai-sdk/openai";
import { streamText } from "ai";

const env = process.env;
const model = createOpenAI({ baseURL: env.OPENAI_BASE_URL, apiKey: env.OPENAI_API_KEY }).chat(
  env.AZURE_OPENAI_DEPLOYMENT,
);
const SYSTEM = "You are a helpful assistant in a Slack workspace. Answer briefly.";

const bot = new Chat({
  userName: "threadwise-bench",
  logger: "error",
  adapters: {
    slack: createSlackAdapter({
      botToken: env.SLACK_BOT_TOKEN,
      signingSecret: env.SLACK_SIGNING_SECRET,
      apiUrl: env.SLACK_API_URL,
    }),
  },
  state: createRedisState({ url: env.REDIS_URL, keyPrefix: env.REDIS_KEY_PREFIX }),
});

async function answer(thread, message) {
  const result = streamText({
    model,
    system: SYSTEM,
    prompt: message.text,
    abortSignal: thread.signal,
    maxRetries: 0,
  });
  await thread.post(result.textStream);
}

bot.onNewMention(async (thread, message) => {
  await thread.subscribe();
  await answer(thread, message);
});
bot.onSubscribedMessage(answer);

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}

const server = http.createServer(async (req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200).end("ok");
    return;
  }
  if (req.method !== "POST" || req.url !== "/slack/events") {
    res.writeHead(404).end();
    return;
  }
  const request = new Request(`http://127.0.0.1${req.url}`, {
    method: "POST",
    headers: req.headers,
    body: await body(req),
  });
  const response = await bot.webhooks.slack(request, {
    waitUntil: (p) => p.catch((e) => console.error("handler failed", e)),
  });
  res.writeHead(response.status, Object.fromEntries(response.headers));
  res.end(Buffer.from(await response.arrayBuffer()));
});

// Keep-alive longer than the sender's pool keeps idle connections (node's default 5 s closes
// connections a sender is about to reuse: resets that would count against the SDK, not it).
server.keepAliveTimeout = 75_000;
server.headersTimeout = 76_000;
await bot.initialize();
server.listen(Number(env.PORT), "127.0.0.1", 1024);
const stop = () => server.close(() => bot.shutdown?.().finally(() => process.exit(0)));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
