// The official `openai` npm package against a served instance (run by tests/test_openai_node.py).
// Usage: node openai_client.mjs BASE_URL VOICE_ID
// Prints one JSON object describing what the client saw; the Python test asserts on it.
import OpenAI from "openai";

const [baseURL, voiceId] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "sk-not-checked", maxRetries: 0, timeout: 60_000 });
const report = {};

const models = await client.models.list();
report.models = models.data.map((model) => ({ id: model.id, object: model.object, owned_by: model.owned_by }));

// Whole answer, string voice (an OpenAI built-in name mapped by PTBR_VOICE_ALIASES), default mp3.
const mp3 = await client.audio.speech.create({ model: "tts-1", voice: "alloy", input: "Olá, tudo bem com você?" });
const mp3Bytes = Buffer.from(await mp3.arrayBuffer());
report.mp3 = {
  status: mp3.status,
  contentType: mp3.headers.get("content-type"),
  seed: mp3.headers.get("x-seed"),
  bytes: mp3Bytes.length,
  base64: mp3Bytes.toString("base64"),
};

// Voice as an object, pcm, read as a stream of chunks.
const pcm = await client.audio.speech.create({
  model: "gpt-4o-mini-tts",
  voice: { id: voiceId },
  input: "Bom dia! Hoje o céu está azul.",
  response_format: "pcm",
  speed: 4.0,
  seed: 7, // an extra body field of this service, passed through as any extra property
});
let pcmBytes = 0;
let pieces = 0;
for await (const piece of pcm.body) {
  pcmBytes += piece.length;
  pieces += 1;
}
report.pcm = {
  status: pcm.status,
  contentType: pcm.headers.get("content-type"),
  seed: pcm.headers.get("x-seed"),
  speedApplied: pcm.headers.get("x-speed-applied"),
  speedRequested: pcm.headers.get("x-speed-requested"),
  bytes: pcmBytes,
  pieces,
};

// Errors: the SDK's APIError subclasses with OpenAI's fields.
for (const [name, params] of [
  ["unknown_voice", { model: "tts-1", voice: "ninguém", input: "Olá" }],
  ["bad_format", { model: "tts-1", voice: voiceId, input: "Olá", response_format: "ogg" }],
  ["unknown_model", { model: "whisper-9", voice: voiceId, input: "Olá" }],
]) {
  try {
    await client.audio.speech.create(params);
    report[name] = { error: null };
  } catch (error) {
    report[name] = {
      class: error.constructor.name,
      status: error.status,
      type: error.type,
      code: error.code,
      param: error.param,
      message: error.message,
      shouldRetry: error.headers?.get?.("x-should-retry") ?? null,
    };
  }
}

process.stdout.write(JSON.stringify(report));
