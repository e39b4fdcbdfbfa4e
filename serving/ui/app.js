// The f5tts-ptbr page: plain JavaScript, no build step, nothing loaded from elsewhere.
// It uses the service's public routes, addressed relative to the page (../synthesize_stream), like any client.
(() => {
  'use strict';

  // --- strings (the HTML carries the Portuguese text as a fallback; both languages live here) -------------------
  const STRINGS = {
    pt: {
      skip: 'Pular para o texto',
      title: 'Clonar uma voz em português do Brasil',
      modelChecking: 'Verificando o modelo…',
      modelLoading: 'O modelo está carregando; a página tenta de novo em instantes…',
      modelFailed: 'O modelo não carregou: {error}',
      modelReady: 'Modelo {tag} pronto ({device}, {dtype}).',
      modelDemo: 'Modelo de demonstração: tudo funciona, mas soa como ruído.',
      referenceHeading: '1. Voz de referência',
      referenceHint: 'Grave ou envie de 3 a 12 segundos de fala limpa e escreva exatamente o que é dito.',
      record: '● Gravar',
      recordStop: '■ Parar gravação',
      recording: 'Gravando… {s} s',
      recorded: 'Gravação de {s} s pronta. Ouça antes de salvar.',
      uploaded: 'Arquivo «{name}» escolhido. Ouça antes de salvar.',
      micUnavailable: 'Gravar precisa de um navegador com microfone, e a página aberta em HTTPS ou em localhost. Envie um arquivo.',
      micDenied: 'Sem acesso ao microfone: {error}',
      referenceFile: 'Ou envie um arquivo de áudio',
      referencePreview: 'Ouvir a referência',
      referenceText: 'Transcrição exata da referência',
      voiceName: 'Nome da voz',
      saveVoice: 'Salvar voz',
      needReference: 'Grave ou escolha um áudio de referência.',
      needTranscript: 'Escreva a transcrição exata da referência.',
      needName: 'Dê um nome à voz.',
      saving: 'Salvando…',
      saved: 'Voz «{name}» salva ({s} s). Ela já está escolhida abaixo.',
      voicesHeading: '2. Vozes salvas',
      refresh: 'Atualizar',
      voicesEmpty: 'Nenhuma voz salva ainda.',
      use: 'Usar',
      sample: 'Ouvir',
      rename: 'Renomear',
      delete: 'Excluir',
      useLabel: 'Usar a voz {name}',
      sampleLabel: 'Ouvir uma amostra da voz {name}',
      renameLabel: 'Renomear a voz {name}',
      deleteLabel: 'Excluir a voz {name}',
      newName: 'Novo nome para {name}',
      save: 'Salvar',
      cancel: 'Cancelar',
      confirmDelete: 'Excluir a voz «{name}»? Não dá para desfazer.',
      deleted: 'Voz «{name}» excluída.',
      renamed: 'Voz renomeada para «{name}».',
      selected: 'Voz «{name}» escolhida.',
      sampleText: 'Olá! Esta é uma amostra da voz {name}.',
      voiceMeta: '{s} s',
      speakHeading: '3. Texto e fala',
      voicePick: 'Voz',
      voiceUnsaved: 'A referência acima (sem salvar)',
      text: 'Texto',
      textCount: '{n} de {max} caracteres',
      previewHeading: 'Como será lido',
      previewEmpty: 'Digite um texto para ver como o modelo vai lê-lo.',
      chunksHeading: 'Trechos',
      chunksCount: 'Trechos em que o texto será gerado: {n}',
      removed: 'O modelo não lê estes caracteres; eles serão removidos: {chars}',
      options: 'Opções',
      speedPreset: 'Velocidade',
      presetQuality: 'Qualidade (32 passos)',
      presetBalanced: 'Equilibrado (16 passos)',
      presetFast: 'Rápido (7 passos)',
      seed: 'Semente (vazio = aleatória)',
      format: 'Formato',
      formatLive: '{fmt}: toca enquanto é gerado.',
      formatWhole: '{fmt}: toca quando termina neste navegador; escolha WAV para ouvir enquanto é gerado.',
      speak: '▶ Falar',
      stop: '■ Parar',
      needText: 'Escreva um texto.',
      needVoice: 'Escolha uma voz salva, ou grave/envie uma referência e escreva a transcrição.',
      speaking: 'Gerando e tocando…',
      spoke: 'Pronto: {s} s de áudio.',
      stopped: 'Parado.',
      resultAudio: 'Fala gerada',
      factSeed: 'Semente',
      factFirst: 'Primeiro áudio',
      factTotal: 'Total',
      factDuration: 'Duração',
      factChunks: 'Trechos',
      seconds: '{s} s',
      download: 'Baixar',
      downloadAs: 'Baixar {fmt}',
      reuseSeed: 'Fixar esta semente',
      seedReused: 'Semente {seed} fixada: a mesma entrada dará o mesmo áudio.',
      jobHeading: '4. Textos longos e legendas',
      jobHint: 'Um capítulo ou um arquivo de legendas vira uma tarefa em segundo plano, com a voz e as opções escolhidas acima.',
      jobKind: 'Tipo de tarefa',
      jobKindLong: 'Texto longo',
      jobKindDub: 'Legendas (.srt, .vtt)',
      jobText: 'Texto longo',
      jobSubtitles: 'Arquivo de legendas',
      jobSubmit: 'Enviar tarefa',
      jobCancel: 'Cancelar tarefa',
      jobProgress: 'Progresso',
      jobAudio: 'Resultado da tarefa',
      jobDownload: 'Baixar resultado',
      needJobText: 'Escreva o texto longo.',
      needSubtitles: 'Escolha um arquivo .srt ou .vtt.',
      jobSending: 'Enviando a tarefa…',
      jobSubmitted: 'Tarefa {id} enviada.',
      jobProgressText: '{done} de {total} · {pct} %',
      jobEta: ' · faltam cerca de {s} s',
      jobCompleted: 'Tarefa concluída: {s} s de áudio.',
      jobFailed: 'A tarefa falhou: {error}',
      jobWaiting: 'A tarefa espera para continuar: {message}',
      apiKey: 'Chave de API',
      apiKeyUse: 'Usar chave',
      apiKeyHint: 'Este serviço pede uma chave. Ela fica só nesta aba e vai no cabeçalho Authorization de cada pedido.',
      apiKeyNeeded: 'Este serviço pede uma chave de API: escreva-a no campo acima.',
      jobCanceled: 'Tarefa cancelada.',
      jobFetching: 'Baixando o resultado…',
      footer: 'A página usa a mesma API que qualquer cliente:',
      langSwitch: 'English',
      status400: 'Dados inválidos',
      status401: 'Chave de API ausente ou inválida',
      status404: 'Não encontrado',
      status409: 'Conflito',
      status413: 'Arquivo grande demais',
      status422: 'Dados inválidos',
      status429: 'Serviço ocupado; tente de novo em {retry} s',
      status500: 'Erro interno do serviço',
      status503: 'Serviço indisponível agora; tente de novo em {retry} s',
      status507: 'O armazenamento do serviço está cheio',
      statusOther: 'Erro',
      networkError: 'Sem resposta do serviço: {error}',
      fieldtext: 'Texto',
      fieldvoice: 'Voz',
      fieldreference_audio: 'Áudio de referência',
      fieldreference_text: 'Transcrição',
      fieldname: 'Nome',
      fieldseed: 'Semente',
      fieldspeed_preset: 'Velocidade',
      fieldresponse_format: 'Formato',
      fieldsubtitles: 'Legendas',
      fielddevice: 'Dispositivo',
      fieldstorage: 'Armazenamento',
      fieldtask_id: 'Tarefa',
      fieldserver: 'Servidor',
      fieldauthorization: 'Chave de API',
    },
    en: {
      skip: 'Skip to the text',
      title: 'Clone a voice in Brazilian Portuguese',
      modelChecking: 'Checking the model…',
      modelLoading: 'The model is loading; the page tries again in a moment…',
      modelFailed: 'The model failed to load: {error}',
      modelReady: 'Model {tag} ready ({device}, {dtype}).',
      modelDemo: 'Demo model: everything works, but it sounds like noise.',
      referenceHeading: '1. Reference voice',
      referenceHint: 'Record or upload 3 to 12 seconds of clean speech and type exactly what is said.',
      record: '● Record',
      recordStop: '■ Stop recording',
      recording: 'Recording… {s} s',
      recorded: 'A {s} s recording is ready. Listen before saving.',
      uploaded: 'File “{name}” chosen. Listen before saving.',
      micUnavailable: 'Recording needs a browser with a microphone, and the page opened over HTTPS or on localhost. Upload a file instead.',
      micDenied: 'No access to the microphone: {error}',
      referenceFile: 'Or upload an audio file',
      referencePreview: 'Listen to the reference',
      referenceText: 'Exact transcript of the reference',
      voiceName: 'Voice name',
      saveVoice: 'Save voice',
      needReference: 'Record or choose a reference audio file.',
      needTranscript: 'Type the exact transcript of the reference.',
      needName: 'Give the voice a name.',
      saving: 'Saving…',
      saved: 'Voice “{name}” saved ({s} s). It is now selected below.',
      voicesHeading: '2. Saved voices',
      refresh: 'Refresh',
      voicesEmpty: 'No saved voices yet.',
      use: 'Use',
      sample: 'Listen',
      rename: 'Rename',
      delete: 'Delete',
      useLabel: 'Use the voice {name}',
      sampleLabel: 'Listen to a sample of the voice {name}',
      renameLabel: 'Rename the voice {name}',
      deleteLabel: 'Delete the voice {name}',
      newName: 'New name for {name}',
      save: 'Save',
      cancel: 'Cancel',
      confirmDelete: 'Delete the voice “{name}”? This cannot be undone.',
      deleted: 'Voice “{name}” deleted.',
      renamed: 'Voice renamed to “{name}”.',
      selected: 'Voice “{name}” selected.',
      sampleText: 'Olá! Esta é uma amostra da voz {name}.',
      voiceMeta: '{s} s',
      speakHeading: '3. Text and speech',
      voicePick: 'Voice',
      voiceUnsaved: 'The reference above (unsaved)',
      text: 'Text (Portuguese)',
      textCount: '{n} of {max} characters',
      previewHeading: 'How it will be read',
      previewEmpty: 'Type some text to see how the model will read it.',
      chunksHeading: 'Chunks',
      chunksCount: 'Chunks the text is generated in: {n}',
      removed: 'The model cannot read these characters; they will be removed: {chars}',
      options: 'Options',
      speedPreset: 'Speed',
      presetQuality: 'Quality (32 steps)',
      presetBalanced: 'Balanced (16 steps)',
      presetFast: 'Fast (7 steps)',
      seed: 'Seed (empty = random)',
      format: 'Format',
      formatLive: '{fmt}: plays while it is generated.',
      formatWhole: '{fmt}: plays when finished in this browser; choose WAV to hear it while it is generated.',
      speak: '▶ Speak',
      stop: '■ Stop',
      needText: 'Type some text.',
      needVoice: 'Pick a saved voice, or record/upload a reference and type its transcript.',
      speaking: 'Generating and playing…',
      spoke: 'Done: {s} s of audio.',
      stopped: 'Stopped.',
      resultAudio: 'Generated speech',
      factSeed: 'Seed',
      factFirst: 'First audio',
      factTotal: 'Total',
      factDuration: 'Duration',
      factChunks: 'Chunks',
      seconds: '{s} s',
      download: 'Download',
      downloadAs: 'Download {fmt}',
      reuseSeed: 'Keep this seed',
      seedReused: 'Seed {seed} kept: the same input will give the same audio.',
      jobHeading: '4. Long texts and subtitles',
      jobHint: 'A chapter or a subtitle file becomes a background job, with the voice and options chosen above.',
      jobKind: 'Job type',
      jobKindLong: 'Long text',
      jobKindDub: 'Subtitles (.srt, .vtt)',
      jobText: 'Long text',
      jobSubtitles: 'Subtitle file',
      jobSubmit: 'Submit job',
      jobCancel: 'Cancel job',
      jobProgress: 'Progress',
      jobAudio: 'Job result',
      jobDownload: 'Download result',
      needJobText: 'Type the long text.',
      needSubtitles: 'Choose an .srt or .vtt file.',
      jobSending: 'Submitting the job…',
      jobSubmitted: 'Job {id} submitted.',
      jobProgressText: '{done} of {total} · {pct} %',
      jobEta: ' · about {s} s left',
      jobCompleted: 'Job finished: {s} s of audio.',
      jobFailed: 'The job failed: {error}',
      jobWaiting: 'The job is waiting to carry on: {message}',
      apiKey: 'API key',
      apiKeyUse: 'Use key',
      apiKeyHint: 'This service asks for a key. It stays in this tab only and goes in the Authorization header of each request.',
      apiKeyNeeded: 'This service asks for an API key: type it in the field above.',
      jobCanceled: 'Job canceled.',
      jobFetching: 'Fetching the result…',
      footer: 'This page uses the same API as any client:',
      langSwitch: 'Português',
      status400: 'Invalid input',
      status401: 'Missing or invalid API key',
      status404: 'Not found',
      status409: 'Conflict',
      status413: 'File too large',
      status422: 'Invalid input',
      status429: 'The service is busy; try again in {retry} s',
      status500: 'Internal service error',
      status503: 'The service is unavailable right now; try again in {retry} s',
      status507: 'The service’s storage is full',
      statusOther: 'Error',
      networkError: 'No answer from the service: {error}',
      fieldtext: 'Text',
      fieldvoice: 'Voice',
      fieldreference_audio: 'Reference audio',
      fieldreference_text: 'Transcript',
      fieldname: 'Name',
      fieldseed: 'Seed',
      fieldspeed_preset: 'Speed',
      fieldresponse_format: 'Format',
      fieldsubtitles: 'Subtitles',
      fielddevice: 'Device',
      fieldstorage: 'Storage',
      fieldtask_id: 'Job',
      fieldserver: 'Server',
      fieldauthorization: 'API key',
    },
  };

  const LANG = pickLanguage();
  const LOCALE = LANG === 'pt' ? 'pt-BR' : 'en';
  const NUMBER = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 2 });
  const PCM_RATE = 24000; // /synthesize_stream's pcm: s16le, 24 kHz, mono
  const FORMATS = {
    wav: { mime: 'audio/wav', ext: 'wav', label: 'WAV' },
    mp3: { mime: 'audio/mpeg', ext: 'mp3', label: 'MP3' },
    opus: { mime: 'audio/ogg; codecs=opus', ext: 'opus', label: 'Opus' },
    aac: { mime: 'audio/aac', ext: 'aac', label: 'AAC' },
    flac: { mime: 'audio/flac', ext: 'flac', label: 'FLAC' },
  };
  // Routes are relative to the service root the page is served under (…/ui/ → …/).
  const API_ROOT = new URL('../', location.href);

  const $ = (id) => document.getElementById(id);
  const secs = (value) => NUMBER.format(value);

  function pickLanguage() {
    const asked = new URLSearchParams(location.search).get('lang');
    if (asked === 'pt' || asked === 'en') return asked;
    const first = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
    return first.toLowerCase().startsWith('pt') ? 'pt' : 'en';
  }

  function t(key, vars) {
    let text = STRINGS[LANG][key];
    if (text === undefined) {
      console.warn(`ui: no "${LANG}" text for "${key}"`);
      text = STRINGS.pt[key] !== undefined ? STRINGS.pt[key] : key;
    }
    return vars ? text.replace(/\{(\w+)\}/g, (all, name) => (vars[name] !== undefined ? String(vars[name]) : all)) : text;
  }

  function applyLanguage() {
    document.documentElement.lang = LOCALE;
    document.title = `f5tts-ptbr · ${t('title')}`;
    for (const element of document.querySelectorAll('[data-i18n]')) element.textContent = t(element.dataset.i18n);
    const other = LANG === 'pt' ? 'en' : 'pt';
    const link = $('lang-switch');
    link.textContent = t('langSwitch');
    link.lang = other === 'pt' ? 'pt-BR' : 'en';
    link.hreflang = link.lang;
    const url = new URL(location.href);
    url.searchParams.set('lang', other);
    link.href = url.search;
  }

  // --- talking to the service --------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, items, retryAfter) {
      super(items.map((item) => `${item.field}: ${item.message}`).join('; ') || `HTTP ${status}`);
      this.status = status;
      this.items = items; // [{field, message}]
      this.retryAfter = retryAfter;
    }
  }

  class NetworkError extends Error {}

  // The service answers {"error": "field: problem", "detail": [{"loc": [...], "msg": "..."}]}; BentoML's own
  // validation errors have the same detail list. Anything else (a proxy's HTML page) becomes its status alone.
  async function readError(response) {
    const retryAfter = response.headers.get('Retry-After');
    let items = [];
    try {
      const body = await response.json();
      if (Array.isArray(body.detail) && body.detail.length) {
        items = body.detail.map((entry) => {
          const loc = Array.isArray(entry.loc) ? entry.loc.filter((part) => part !== 'body') : [];
          return { field: loc.length ? String(loc[loc.length - 1]) : '', message: String(entry.msg || '') };
        });
      } else if (typeof body.error === 'string') {
        const at = body.error.indexOf(': ');
        items = [at > 0 ? { field: body.error.slice(0, at), message: body.error.slice(at + 2) }
          : { field: '', message: body.error }];
      } else if (body.error && typeof body.error.message === 'string') {
        items = [{ field: body.error.param || '', message: body.error.message }];
      }
    } catch (ignored) {
      items = [];
    }
    return new ApiError(response.status, items, retryAfter);
  }

  function describeError(error) {
    if (error instanceof ApiError) {
      const key = `status${error.status}`;
      const lead = STRINGS[LANG][key] !== undefined ? t(key, { retry: error.retryAfter || '?' }) : t('statusOther');
      const parts = error.items.map((item) => {
        const label = item.field && STRINGS[LANG][`field${item.field}`] !== undefined ? t(`field${item.field}`) : item.field;
        return label ? `${label}: ${item.message}` : item.message;
      });
      return `${lead} (HTTP ${error.status})${parts.length ? ' — ' + parts.join('; ') : ''}`;
    }
    if (error instanceof NetworkError) return t('networkError', { error: error.message });
    return String(error && error.message ? error.message : error);
  }

  // With API keys on (PTBR_API_KEYS), the page itself loads without one but every route it calls needs
  // `Authorization: Bearer <key>`: the user types the key once; it is kept in this tab's sessionStorage only.
  const KEY_STORAGE = 'f5tts-ptbr-api-key';
  let memoryKey = ''; // when sessionStorage is switched off

  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || '';
    } catch (ignored) {
      return '';
    }
  }

  function showKeyForm() {
    const form = $('key-form');
    if (!form.hidden) return;
    form.hidden = false;
    $('api-key').focus();
  }

  function useKey(event) {
    event.preventDefault();
    const key = $('api-key').value.trim();
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (ignored) {
      // storage switched off: the key lasts until the page is left
    }
    memoryKey = key;
    $('api-key').value = '';
    loadModelInfo();
    refreshVoices();
  }

  async function call(route, { json, form, method = 'POST', params, signal } = {}) {
    const url = new URL(route, API_ROOT);
    for (const [name, value] of Object.entries(params || {})) url.searchParams.set(name, value);
    const init = { method, signal, headers: {} };
    const key = apiKey() || memoryKey;
    if (key) init.headers.Authorization = `Bearer ${key}`;
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    } else if (form) {
      init.body = form;
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      throw new NetworkError(error.message);
    }
    if (response.status === 401) showKeyForm();
    if (!response.ok) throw await readError(response);
    return response;
  }

  function say(element, text, kind = 'info') {
    element.textContent = text;
    element.className = `message ${kind}`;
  }

  // --- model status --------------------------------------------------------------------------------------------

  const state = {
    maxTextChars: 2000,
    reference: { blob: null, name: '', seconds: null, url: null },
    voices: [],
    recorder: null,
    speaking: null, // {controller, player}
    lastSeed: null,
    job: null, // {route, id, format, timer}
    resultUrl: null,
    jobUrl: null,
  };
  // The /normalize preview: a debounce timer, a counter that makes late answers stale, the request in flight.
  let previewTimer = null;
  let previewSequence = 0;
  let previewAbort = null;

  async function loadModelInfo() {
    const status = $('model-status');
    try {
      const info = await (await call('model_info', { json: {} })).json();
      if (info.limits && info.limits.max_text_chars) state.maxTextChars = info.limits.max_text_chars;
      if (info.defaults && info.defaults.speed_preset) $('speed-preset').value = info.defaults.speed_preset;
      updateCount();
      if (info.status === 'failed') {
        say(status, t('modelFailed', { error: info.error || '' }), 'error');
      } else if (info.status !== 'ready') {
        say(status, t('modelLoading'));
        setTimeout(loadModelInfo, 2000);
      } else {
        const ready = t('modelReady', { tag: info.tag, device: info.device, dtype: info.dtype });
        say(status, info.demo ? `${ready} ${t('modelDemo')}` : ready, info.demo ? 'warning' : 'ok');
      }
    } catch (error) {
      say(status, error instanceof ApiError && error.status === 401 ? t('apiKeyNeeded') : describeError(error), 'error');
      if (error instanceof ApiError && error.status === 503) setTimeout(loadModelInfo, 2000);
    }
  }

  // --- reference: record or upload -----------------------------------------------------------------------------

  function setReference(blob, name, seconds) {
    const ref = state.reference;
    if (ref.url) URL.revokeObjectURL(ref.url);
    ref.blob = blob;
    ref.name = name;
    ref.seconds = seconds;
    ref.url = URL.createObjectURL(blob);
    const preview = $('reference-preview');
    preview.src = ref.url;
    preview.hidden = false;
    schedulePreview();
  }

  function onReferenceLoaded() {
    // MediaRecorder's webm reports an infinite duration; the recording keeps the time it measured itself.
    const duration = $('reference-preview').duration;
    if (state.reference.seconds === null && Number.isFinite(duration)) {
      state.reference.seconds = duration;
      schedulePreview();
    }
  }

  function onReferenceFile() {
    const file = $('reference-file').files[0];
    if (!file) return;
    setReference(file, file.name, null);
    say($('reference-message'), t('uploaded', { name: file.name }));
  }

  async function toggleRecording() {
    const message = $('reference-message');
    if (state.recorder) {
      state.recorder.stop();
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
      say(message, t('micUnavailable'), 'error');
      return;
    }
    let stream;
    try {
      // Raw voice: echo cancellation, noise suppression and gain control colour the timbre the model clones.
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (error) {
      say(message, t('micDenied', { error: error.message || error.name }), 'error');
      return;
    }
    const types = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/webm', 'audio/mp4'];
    const type = types.find((candidate) => MediaRecorder.isTypeSupported(candidate)) || '';
    const recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    const parts = [];
    const started = performance.now();
    const button = $('record');
    const clock = $('record-time');
    const tick = setInterval(() => {
      const elapsed = (performance.now() - started) / 1000;
      clock.textContent = t('recording', { s: secs(Math.floor(elapsed)) });
      if (elapsed >= 30) recorder.stop(); // the service keeps at most 12 s anyway
    }, 250);
    recorder.ondataavailable = (event) => { if (event.data.size) parts.push(event.data); };
    recorder.onstop = () => {
      clearInterval(tick);
      stream.getTracks().forEach((track) => track.stop());
      const seconds = (performance.now() - started) / 1000;
      const mime = recorder.mimeType || type || 'audio/webm';
      const ext = mime.includes('ogg') ? 'ogg' : mime.includes('mp4') ? 'm4a' : 'webm';
      setReference(new Blob(parts, { type: mime }), `gravacao.${ext}`, seconds);
      state.recorder = null;
      button.textContent = t('record');
      button.setAttribute('aria-pressed', 'false');
      clock.textContent = '';
      say(message, t('recorded', { s: secs(Math.round(seconds * 10) / 10) }), 'ok');
    };
    state.recorder = recorder;
    recorder.start(250);
    button.textContent = t('recordStop');
    button.setAttribute('aria-pressed', 'true');
    say(message, t('recording', { s: 0 }));
  }

  async function saveVoice(event) {
    event.preventDefault();
    const message = $('reference-message');
    const name = $('voice-name').value.trim();
    const transcript = $('reference-text').value.trim();
    if (!state.reference.blob) return say(message, t('needReference'), 'error');
    if (!transcript) { $('reference-text').focus(); return say(message, t('needTranscript'), 'error'); }
    if (!name) { $('voice-name').focus(); return say(message, t('needName'), 'error'); }
    const form = new FormData();
    form.set('name', name);
    form.set('reference_text', transcript);
    form.set('reference_audio', state.reference.blob, state.reference.name || 'referencia.wav');
    form.set('language', 'pt-BR');
    const button = $('save-voice');
    button.disabled = true;
    say(message, t('saving'));
    try {
      const voice = await (await call('create_voice', { form })).json();
      say(message, t('saved', { name: voice.name, s: secs(voice.duration_s) }), 'ok');
      $('voice-name').value = '';
      await refreshVoices(voice.id);
    } catch (error) {
      say(message, describeError(error), 'error');
    } finally {
      button.disabled = false;
    }
  }

  // --- saved voices --------------------------------------------------------------------------------------------

  async function refreshVoices(selectId) {
    const message = $('voices-message');
    try {
      const data = await (await call('list_voices', { json: { offset: 0, limit: 1000 } })).json();
      state.voices = data.voices;
      renderVoices();
      fillVoicePicker(selectId);
      if (message.classList.contains('error')) say(message, ''); // an earlier failure is over
    } catch (error) {
      say(message, describeError(error), 'error');
    }
  }

  function button(label, action, ariaLabel) {
    const element = document.createElement('button');
    element.type = 'button';
    element.textContent = label;
    element.dataset.action = action;
    if (ariaLabel) element.setAttribute('aria-label', ariaLabel);
    return element;
  }

  function renderVoices() {
    const list = $('voice-list');
    list.replaceChildren();
    $('voices-empty').hidden = state.voices.length > 0;
    for (const voice of state.voices) {
      const item = document.createElement('li');
      item.className = 'voice';
      item.dataset.id = voice.id;
      const about = document.createElement('div');
      about.className = 'voice-about';
      const name = document.createElement('strong');
      name.className = 'voice-name';
      name.textContent = voice.name;
      const meta = document.createElement('span');
      meta.className = 'voice-meta';
      meta.textContent = ` · ${t('voiceMeta', { s: secs(voice.duration_s) })}`;
      const transcript = document.createElement('p');
      transcript.className = 'voice-text';
      transcript.textContent = voice.reference_text;
      about.append(name, meta, transcript);
      const actions = document.createElement('div');
      actions.className = 'voice-actions';
      actions.append(
        button(t('use'), 'use', t('useLabel', { name: voice.name })),
        button(t('sample'), 'sample', t('sampleLabel', { name: voice.name })),
        button(t('rename'), 'rename', t('renameLabel', { name: voice.name })),
        button(t('delete'), 'delete', t('deleteLabel', { name: voice.name })),
      );
      item.append(about, actions);
      list.append(item);
    }
  }

  function fillVoicePicker(selectId) {
    const picker = $('voice');
    const keep = selectId || picker.value;
    while (picker.options.length > 1) picker.remove(1);
    for (const voice of state.voices) picker.add(new Option(voice.name, voice.id));
    picker.value = state.voices.some((voice) => voice.id === keep) ? keep : '';
    schedulePreview();
  }

  function voiceById(id) {
    return state.voices.find((voice) => voice.id === id);
  }

  async function onVoiceAction(event) {
    const target = event.target.closest('button[data-action]');
    if (!target) return;
    const item = target.closest('li.voice');
    const voice = voiceById(item.dataset.id);
    if (!voice) return;
    const message = $('voices-message');
    switch (target.dataset.action) {
      case 'use':
        $('voice').value = voice.id;
        schedulePreview();
        say(message, t('selected', { name: voice.name }), 'ok');
        $('text').focus();
        break;
      case 'sample':
        speak({ text: t('sampleText', { name: voice.name }), voice: voice.id });
        break;
      case 'rename':
        openRename(item, voice);
        break;
      case 'delete':
        if (!window.confirm(t('confirmDelete', { name: voice.name }))) return;
        // No preview may ask about this voice any more: drop a pending or running one, and unpick the voice.
        clearTimeout(previewTimer);
        previewSequence += 1;
        if (previewAbort) previewAbort.abort();
        if ($('voice').value === voice.id) $('voice').value = '';
        try {
          await call('delete_voice', { json: { voice: voice.id } });
          // Gone at once from the list and the picker, even if the refresh below fails.
          state.voices = state.voices.filter((other) => other.id !== voice.id);
          renderVoices();
          fillVoicePicker();
          say(message, t('deleted', { name: voice.name }), 'ok');
          await refreshVoices();
          $('refresh-voices').focus();
        } catch (error) {
          say(message, describeError(error), 'error');
        }
        break;
      default:
        break;
    }
  }

  function openRename(item, voice) {
    if (item.querySelector('form')) return;
    const form = document.createElement('form');
    form.className = 'rename-form row';
    const field = document.createElement('div');
    field.className = 'grow';
    const label = document.createElement('label');
    const input = document.createElement('input');
    input.type = 'text';
    input.id = `rename-${voice.id}`;
    input.value = voice.name;
    input.maxLength = 64;
    input.autocomplete = 'off';
    label.htmlFor = input.id;
    label.textContent = t('newName', { name: voice.name });
    field.append(label, input);
    const save = button(t('save'), 'save-rename');
    save.type = 'submit';
    const cancel = button(t('cancel'), 'cancel-rename');
    const close = () => { form.remove(); item.querySelector('[data-action="rename"]').focus(); };
    cancel.addEventListener('click', (event) => { event.stopPropagation(); close(); });
    input.addEventListener('keydown', (event) => { if (event.key === 'Escape') close(); });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const message = $('voices-message');
      try {
        const renamed = await (await call('rename_voice', { json: { voice: voice.id, name: input.value.trim() } })).json();
        say(message, t('renamed', { name: renamed.name }), 'ok');
        await refreshVoices();
        const again = document.querySelector(`li.voice[data-id="${CSS.escape(voice.id)}"] [data-action="rename"]`);
        if (again) again.focus();
      } catch (error) {
        say(message, describeError(error), 'error');
        input.focus();
      }
    });
    form.append(field, save, cancel);
    item.append(form);
    input.focus();
    input.select();
  }

  // --- the text as the model will read it (/normalize) ----------------------------------------------------------

  function updateCount() {
    $('text-count').textContent = t('textCount', { n: $('text').value.length, max: state.maxTextChars });
  }

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(runPreview, 300);
  }

  function voiceFieldsForPreview(body) {
    const voice = $('voice').value;
    const transcript = $('reference-text').value.trim();
    if (voice) body.voice = voice;
    else if (transcript && state.reference.seconds) {
      body.reference_text = transcript;
      body.reference_seconds = Math.min(60, Math.max(0.1, state.reference.seconds));
    }
  }

  async function runPreview() {
    const text = $('text').value;
    const normalized = $('normalized');
    const warning = $('removed-warning');
    const chunks = $('chunks');
    const sequence = ++previewSequence;
    if (previewAbort) previewAbort.abort();
    if (!text.trim()) {
      normalized.textContent = t('previewEmpty');
      normalized.className = 'normalized empty';
      chunks.replaceChildren();
      $('chunks-summary').textContent = t('chunksHeading');
      warning.hidden = true;
      return;
    }
    const body = { text };
    voiceFieldsForPreview(body);
    previewAbort = new AbortController();
    try {
      const data = await (await call('normalize', { json: body, signal: previewAbort.signal })).json();
      if (sequence !== previewSequence) return;
      normalized.textContent = data.text;
      normalized.className = 'normalized';
      chunks.replaceChildren(...data.chunks.map((chunk) => {
        const item = document.createElement('li');
        item.textContent = chunk;
        return item;
      }));
      $('chunks-summary').textContent = t('chunksCount', { n: data.chunks.length });
      if (data.removed_characters && data.removed_characters.length) {
        const shown = data.removed_characters.map((character) =>
          `${character} (U+${character.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')})`);
        say(warning, t('removed', { chars: shown.join(', ') }), 'warning');
        warning.hidden = false;
      } else {
        warning.hidden = true;
      }
    } catch (error) {
      if (error.name === 'AbortError' || sequence !== previewSequence) return;
      normalized.textContent = describeError(error);
      normalized.className = 'normalized error';
      chunks.replaceChildren();
      warning.hidden = true;
    }
  }

  // --- playing the answer as it streams --------------------------------------------------------------------------

  let audioContext = null;

  function sharedAudioContext() {
    // Created (or resumed) inside the click that starts playback, as browsers' autoplay rules require.
    if (!audioContext) {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return null;
      audioContext = new Context();
    }
    if (audioContext.state === 'suspended') audioContext.resume();
    return audioContext;
  }

  function concatBytes(parts, total) {
    const out = new Uint8Array(total === undefined ? parts.reduce((sum, part) => sum + part.length, 0) : total);
    let at = 0;
    for (const part of parts) { out.set(part, at); at += part.length; }
    return out;
  }

  // Raw s16le PCM → Web Audio buffers scheduled back to back. Pieces of at least 0.1 s keep the scheduling cheap;
  // an odd trailing byte waits for its partner in the next network read.
  class PcmPlayer {
    constructor(context, rate) {
      this.context = context;
      this.rate = rate;
      this.pending = [];
      this.pendingBytes = 0;
      this.at = 0;
      this.sources = new Set();
      this.firstScheduledAt = null;
    }

    push(bytes) {
      this.pending.push(bytes);
      this.pendingBytes += bytes.length;
      if (this.pendingBytes >= this.rate * 2 * 0.1) this.flush();
    }

    flush() {
      if (this.pendingBytes < 2) return;
      const joined = concatBytes(this.pending, this.pendingBytes);
      const usable = joined.length - (joined.length % 2);
      this.pending = usable < joined.length ? [joined.slice(usable)] : [];
      this.pendingBytes = joined.length - usable;
      const frames = usable / 2;
      const view = new DataView(joined.buffer, joined.byteOffset, usable);
      const samples = new Float32Array(frames);
      for (let i = 0; i < frames; i += 1) samples[i] = view.getInt16(i * 2, true) / 32768;
      const buffer = this.context.createBuffer(1, frames, this.rate);
      buffer.copyToChannel(samples, 0);
      const source = this.context.createBufferSource();
      source.buffer = buffer;
      source.connect(this.context.destination);
      const start = Math.max(this.at, this.context.currentTime + 0.05);
      source.start(start);
      this.at = start + frames / this.rate;
      this.sources.add(source);
      source.onended = () => this.sources.delete(source);
      if (this.firstScheduledAt === null) this.firstScheduledAt = performance.now();
    }

    end() { this.flush(); }

    stop() {
      for (const source of this.sources) {
        try { source.stop(); } catch (ignored) { /* already ended */ }
      }
      this.sources.clear();
    }
  }

  // mp3/aac bytes → MediaSource → the <audio> element, appended as they arrive.
  class StreamingElementPlayer {
    constructor(audio, mime) {
      this.audio = audio;
      this.mime = mime;
      this.queue = [];
      this.ended = false;
      this.buffer = null;
      this.firstScheduledAt = null;
      this.source = new MediaSource();
      this.url = URL.createObjectURL(this.source);
      audio.src = this.url;
      this.source.addEventListener('sourceopen', () => {
        this.buffer = this.source.addSourceBuffer(mime);
        this.buffer.mode = 'sequence';
        this.buffer.addEventListener('updateend', () => this.pump());
        this.pump();
      }, { once: true });
    }

    push(bytes) { this.queue.push(bytes); this.pump(); }

    pump() {
      if (!this.buffer || this.buffer.updating || this.source.readyState !== 'open') return;
      if (this.queue.length) {
        const bytes = concatBytes(this.queue);
        this.queue = [];
        this.buffer.appendBuffer(bytes);
        if (this.firstScheduledAt === null) {
          this.firstScheduledAt = performance.now();
          this.audio.play().catch(() => {});
        }
      } else if (this.ended) {
        this.source.endOfStream();
      }
    }

    end() { this.ended = true; this.pump(); }

    stop() { this.audio.pause(); }
  }

  function wavFromPcm(parts, total, rate) {
    const header = new DataView(new ArrayBuffer(44));
    const ascii = (offset, text) => { for (let i = 0; i < text.length; i += 1) header.setUint8(offset + i, text.charCodeAt(i)); };
    const data = total - (total % 2);
    ascii(0, 'RIFF'); header.setUint32(4, 36 + data, true); ascii(8, 'WAVE');
    ascii(12, 'fmt '); header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
    header.setUint32(24, rate, true); header.setUint32(28, rate * 2, true); header.setUint16(32, 2, true);
    header.setUint16(34, 16, true); ascii(36, 'data'); header.setUint32(40, data, true);
    const body = concatBytes(parts, total).subarray(0, data);
    return new Blob([header.buffer, body], { type: 'audio/wav' });
  }

  // How a format is played here: WAV as a pcm stream through Web Audio; mp3/aac through MediaSource where the
  // browser takes them; opus (Ogg: no MediaSource anywhere) and flac (no stream format) when complete.
  function playbackPlan(format) {
    const info = FORMATS[format];
    const hasWebAudio = Boolean(window.AudioContext || window.webkitAudioContext);
    if (format === 'wav') {
      return hasWebAudio ? { route: 'synthesize_stream', responseFormat: 'pcm', sink: 'pcm', ...info }
        : { route: 'synthesize', responseFormat: 'wav', sink: 'file', ...info };
    }
    if (format === 'flac') return { route: 'synthesize', responseFormat: 'flac', sink: 'file', ...info };
    const live = (format === 'mp3' || format === 'aac') && window.MediaSource && MediaSource.isTypeSupported(info.mime);
    return { route: 'synthesize_stream', responseFormat: format, sink: live ? 'element' : 'file', ...info };
  }

  function updateFormatHint() {
    const format = $('format').value;
    const plan = playbackPlan(format);
    $('format-hint').textContent = t(plan.sink === 'file' ? 'formatWhole' : 'formatLive', { fmt: plan.label });
    $('download').textContent = format === 'wav' ? t('download') : t('downloadAs', { fmt: plan.label });
  }

  // The voice fields every synthesis and job shares: a saved voice, else the reference above.
  function addVoiceFields(form, voice, message) {
    const chosen = voice !== undefined ? voice : $('voice').value;
    if (chosen) {
      form.set('voice', chosen);
      return true;
    }
    const transcript = $('reference-text').value.trim();
    if (!state.reference.blob || !transcript) {
      say(message, t('needVoice'), 'error');
      return false;
    }
    form.set('reference_audio', state.reference.blob, state.reference.name || 'referencia.wav');
    form.set('reference_text', transcript);
    return true;
  }

  function addOptions(form, format) {
    form.set('speed_preset', $('speed-preset').value);
    const seed = $('seed').value.trim();
    if (seed !== '') form.set('seed', seed);
    if (format) form.set('response_format', format);
  }

  function setFact(id, value) { $(id).textContent = value; }

  function whenMetadata(audio) {
    return new Promise((resolve) => {
      if (audio.readyState >= 1) { resolve(); return; }
      audio.addEventListener('loadedmetadata', () => resolve(), { once: true });
      audio.addEventListener('error', () => resolve(), { once: true });
    });
  }

  async function speak(override) {
    if (state.speaking) return;
    const message = $('speak-message');
    const text = override ? override.text : $('text').value;
    if (!text.trim()) {
      $('text').focus();
      say(message, t('needText'), 'error');
      return;
    }
    const form = new FormData();
    form.set('text', text);
    if (!addVoiceFields(form, override ? override.voice : undefined, message)) return;
    const format = override ? 'wav' : $('format').value;
    const plan = playbackPlan(format);
    addOptions(form, plan.responseFormat);

    const audio = $('result-audio');
    audio.pause();
    audio.removeAttribute('src');
    audio.load();
    if (state.resultUrl) { URL.revokeObjectURL(state.resultUrl); state.resultUrl = null; }
    const context = plan.sink === 'pcm' ? sharedAudioContext() : null;
    const player = plan.sink === 'pcm' ? new PcmPlayer(context, PCM_RATE)
      : plan.sink === 'element' ? new StreamingElementPlayer(audio, plan.mime) : null;
    const controller = new AbortController();
    state.speaking = { controller, player };
    $('speak').disabled = true;
    $('stop').disabled = false;
    $('result').hidden = false;
    $('download').hidden = true;
    $('reuse-seed').hidden = true;
    for (const id of ['fact-seed', 'fact-first', 'fact-total', 'fact-duration', 'fact-chunks']) setFact(id, '…');
    for (const name of ['firstAudioMs', 'totalMs', 'playbackStartedMs']) delete $('result').dataset[name];
    say(message, t('speaking'));
    const started = performance.now();
    try {
      const response = await call(plan.route, { form, signal: controller.signal });
      state.lastSeed = response.headers.get('X-Seed');
      setFact('fact-seed', state.lastSeed || '–');
      setFact('fact-chunks', response.headers.get('X-Chunks') || '1');
      const reader = response.body.getReader();
      const parts = [];
      let received = 0;
      let firstAudio = null;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!value || !value.length) continue;
        parts.push(value);
        received += value.length;
        if (player) player.push(value);
        if (firstAudio === null) {
          firstAudio = (performance.now() - started) / 1000;
          setFact('fact-first', t('seconds', { s: secs(firstAudio) }));
        }
      }
      const total = (performance.now() - started) / 1000;
      if (player) player.end();
      setFact('fact-total', t('seconds', { s: secs(total) }));
      // Timings in milliseconds for anyone measuring the page: first bytes, playback started, stream ended.
      const result = $('result');
      result.dataset.firstAudioMs = String(Math.round(firstAudio * 1000));
      result.dataset.totalMs = String(Math.round(total * 1000));
      if (player && player.firstScheduledAt !== null) {
        result.dataset.playbackStartedMs = String(Math.round(player.firstScheduledAt - started));
      }
      const blob = plan.sink === 'pcm' ? wavFromPcm(parts, received, PCM_RATE) : new Blob(parts, { type: plan.mime });
      state.resultUrl = URL.createObjectURL(blob);
      if (plan.sink !== 'element') audio.src = state.resultUrl; // the MediaSource keeps playing what it holds
      if (plan.sink === 'file') audio.play().catch(() => {});
      let duration = plan.sink === 'pcm' ? Math.floor(received / 2) / PCM_RATE : null;
      if (duration === null) {
        await whenMetadata(audio);
        duration = Number.isFinite(audio.duration) ? audio.duration
          : Number(response.headers.get('X-Audio-Duration')) || 0;
      }
      setFact('fact-duration', t('seconds', { s: secs(duration) }));
      const download = $('download');
      download.href = state.resultUrl;
      download.download = `fala-${state.lastSeed || 'f5tts'}.${plan.ext}`;
      download.hidden = false;
      $('reuse-seed').hidden = !state.lastSeed;
      audio.dataset.seconds = String(duration);
      say(message, t('spoke', { s: secs(duration) }), 'ok');
    } catch (error) {
      if (player) player.stop();
      if (error.name === 'AbortError') say(message, t('stopped'));
      else say(message, describeError(error), 'error');
      // Refused before any audio: nothing to show; stopped midway: what arrived stays unreachable, so hide it too.
      $('result').hidden = true;
    } finally {
      state.speaking = null;
      $('speak').disabled = false;
      $('stop').disabled = true;
    }
  }

  function stopSpeaking() {
    if (!state.speaking) return;
    state.speaking.controller.abort();
    if (state.speaking.player) state.speaking.player.stop();
  }

  function reuseSeed() {
    if (!state.lastSeed) return;
    $('seed').value = state.lastSeed;
    say($('speak-message'), t('seedReused', { seed: state.lastSeed }), 'ok');
  }

  // --- jobs: long text and subtitles ----------------------------------------------------------------------------

  function jobKind() {
    return document.querySelector('input[name="job-kind"]:checked').value;
  }

  function onJobKind() {
    const long = jobKind() === 'long';
    $('job-long').hidden = !long;
    $('job-dub').hidden = long;
  }

  function renderJobProgress(status) {
    const progress = status.progress || {};
    const total = Math.max(0, Number(progress.total) || 0);
    const done = Math.min(total, Math.max(0, Number(progress.done) || 0));
    const bar = $('job-progress');
    bar.max = total || 1;
    bar.value = done;
    const percent = total ? Math.round((100 * done) / total) : 0;
    let text = t('jobProgressText', { done, total, pct: percent });
    if (status.status === 'in_progress' && Number.isFinite(status.eta_s) && status.eta_s > 0) {
      text += t('jobEta', { s: secs(Math.ceil(status.eta_s)) });
    }
    $('job-progress-text').textContent = text;
  }

  async function submitJob() {
    if (state.job) return;
    const message = $('job-message');
    const kind = jobKind();
    const form = new FormData();
    if (kind === 'long') {
      const text = $('job-text').value;
      if (!text.trim()) { $('job-text').focus(); say(message, t('needJobText'), 'error'); return; }
      form.set('text', text);
    } else {
      const file = $('job-subtitles').files[0];
      if (!file) { $('job-subtitles').focus(); say(message, t('needSubtitles'), 'error'); return; }
      form.set('subtitles', file, file.name);
    }
    if (!addVoiceFields(form, undefined, message)) return;
    const format = $('format').value;
    addOptions(form, format);
    const route = kind === 'long' ? 'synthesize_long' : 'dub_subtitles';
    $('job-submit').disabled = true;
    $('job-result').hidden = true;
    say(message, t('jobSending'));
    renderJobProgress({ progress: { done: 0, total: 0 } });
    try {
      const submitted = await (await call(`${route}/submit`, { form })).json();
      state.job = { route, id: submitted.task_id, format, timer: null };
      $('job-cancel').disabled = false;
      say(message, t('jobSubmitted', { id: submitted.task_id }));
      if (submitted.progress) renderJobProgress(submitted);
      pollJob();
    } catch (error) {
      say(message, describeError(error), 'error');
      $('job-submit').disabled = false;
    }
  }

  function finishJob() {
    if (state.job && state.job.timer) clearTimeout(state.job.timer);
    state.job = null;
    $('job-submit').disabled = false;
    $('job-cancel').disabled = true;
  }

  async function pollJob() {
    const job = state.job;
    if (!job) return;
    const message = $('job-message');
    let status;
    try {
      status = await (await call(`${job.route}/status`, { method: 'GET', params: { task_id: job.id } })).json();
    } catch (error) {
      say(message, describeError(error), 'error');
      finishJob();
      return;
    }
    if (state.job !== job) return;
    renderJobProgress(status);
    if (status.status === 'completed') {
      await fetchJobResult(job, status);
      finishJob();
    } else if (status.status === 'failed') {
      say(message, t('jobFailed', { error: status.error || '' }), 'error');
      finishJob();
    } else if (status.status === 'canceled') {
      say(message, t('jobCanceled'));
      finishJob();
    } else {
      // A fault that passes (out of device memory, a full disk): the job keeps its chunks and carries on.
      if (status.retry && status.retry.message) say(message, t('jobWaiting', { message: status.retry.message }), 'warning');
      job.timer = setTimeout(pollJob, 500);
    }
  }

  async function fetchJobResult(job, status) {
    const message = $('job-message');
    say(message, t('jobFetching'));
    try {
      const response = await call(`${job.route}/get`, { method: 'GET', params: { task_id: job.id } });
      const blob = await response.blob();
      if (state.jobUrl) URL.revokeObjectURL(state.jobUrl);
      state.jobUrl = URL.createObjectURL(blob);
      const audio = $('job-audio');
      audio.src = state.jobUrl;
      const download = $('job-download');
      download.href = state.jobUrl;
      download.download = `tarefa-${job.id}.${FORMATS[job.format].ext}`;
      $('job-result').hidden = false;
      await whenMetadata(audio);
      const seconds = Number.isFinite(audio.duration) ? audio.duration : Number(status.audio_seconds) || 0;
      audio.dataset.seconds = String(seconds);
      say(message, t('jobCompleted', { s: secs(seconds) }), 'ok');
    } catch (error) {
      say(message, describeError(error), 'error');
    }
  }

  async function cancelJob() {
    const job = state.job;
    if (!job) return;
    try {
      await call(`${job.route}/cancel`, { method: 'PUT', params: { task_id: job.id } });
    } catch (error) {
      say($('job-message'), describeError(error), 'error');
    }
  }

  // --- wiring ----------------------------------------------------------------------------------------------------

  function start() {
    applyLanguage();
    $('record').addEventListener('click', toggleRecording);
    $('reference-file').addEventListener('change', onReferenceFile);
    $('reference-preview').addEventListener('loadedmetadata', onReferenceLoaded);
    $('reference-text').addEventListener('input', schedulePreview);
    $('save-voice-form').addEventListener('submit', saveVoice);
    $('key-form').addEventListener('submit', useKey);
    if (apiKey()) $('key-form').hidden = false;
    $('refresh-voices').addEventListener('click', () => refreshVoices());
    $('voice-list').addEventListener('click', onVoiceAction);
    $('voice').addEventListener('change', schedulePreview);
    $('text').addEventListener('input', () => { updateCount(); schedulePreview(); });
    $('text').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); speak(); }
    });
    $('format').addEventListener('change', updateFormatHint);
    $('speak').addEventListener('click', () => speak());
    $('stop').addEventListener('click', stopSpeaking);
    $('reuse-seed').addEventListener('click', reuseSeed);
    for (const radio of document.querySelectorAll('input[name="job-kind"]')) radio.addEventListener('change', onJobKind);
    $('job-submit').addEventListener('click', submitJob);
    $('job-cancel').addEventListener('click', cancelJob);
    updateFormatHint();
    updateCount();
    onJobKind();
    runPreview();
    loadModelInfo();
    refreshVoices();
  }

  start();
})();
