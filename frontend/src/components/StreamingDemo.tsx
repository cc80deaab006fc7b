/**
 * The demo page: text, language (when the model speaks more than English), voice and
 * parameters; "Play" streams through the StreamingAudioPlayer;
 * "Compare" streams the same text and then synthesizes it the regular way, and charts how long
 * each took to produce its first audio.
 */
import { useEffect, useMemo, useRef, useState, type KeyboardEvent } from 'react';
import { chatterboxAPI, type ChatterboxAPI, type SynthesisParams } from '../lib/api';
import { ChatterboxError, asChatterboxError, isAbort } from '../lib/errors';
import {
  DEFAULT_LANGUAGE,
  NO_LANGUAGES,
  canChooseLanguage,
  effectiveLanguage,
  textDirection,
  textForLanguage,
} from '../lib/languages';
import {
  ADVANCED_PARAMS,
  ALL_PARAMS,
  defaultParamValues,
  paramInputId,
  parseParam,
  type FieldErrors,
  type ParamName,
  type ParamValues,
} from '../lib/params';
import { DEFAULT_VOICE, checkAudioFile, type VoiceChoice } from '../lib/voiceChoice';
import { ComparisonChart, type ComparisonRow } from './ComparisonChart';
import { LanguagePicker } from './LanguagePicker';
import { ParameterControls } from './ParameterControls';
import {
  StreamingAudioPlayer,
  type StreamRequest,
  type StreamingAudioPlayerHandle,
} from './StreamingAudioPlayer';
import { VoicePicker } from './VoicePicker';

export const DEFAULT_TEXT =
  'Hello! This is Chatterbox, speaking while the rest of this sentence is still being generated.';
export const MAX_TEXT_CHARS = 4096;
const TEXT_ID = 'synthesis-text';
const LANGUAGE_ID = 'synthesis-language';

interface Comparison {
  stage: 'streaming' | 'regular' | 'done' | 'error' | 'cancelled';
  streaming: { firstAudio: number | null; complete: number; serverFirst: number | null } | null;
  regular: { firstAudio: number; serverTotal: number | undefined } | null;
  error: string | null;
}

const ADVANCED_NAMES = new Set<string>(ADVANCED_PARAMS.map((p) => p.name));

function focusField(field: string): void {
  const id =
    field === 'text'
      ? TEXT_ID
      : field === 'language'
        ? LANGUAGE_ID
        : ALL_PARAMS.some((p) => p.name === field)
          ? paramInputId(field)
          : null;
  // After React has rendered (an advanced field may have just been revealed).
  requestAnimationFrame(() => {
    if (id) document.getElementById(id)?.focus();
  });
}

/** On a narrow screen the player sits below the form: bring it into view when playback starts. */
function revealPlayer(): void {
  const player = document.getElementById('player-title')?.closest('section');
  if (!player) return;
  const box = player.getBoundingClientRect();
  if (box.top < 0 || box.top > window.innerHeight - 80) {
    const reduced = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    player.scrollIntoView({ behavior: reduced ? 'auto' : 'smooth', block: 'start' });
  }
}

export function StreamingDemo({
  api = chatterboxAPI,
  languages = NO_LANGUAGES,
}: {
  api?: ChatterboxAPI;
  /** What the server's model speaks (ISO 639-1); a picker shows when that is more than one. */
  languages?: readonly string[];
}) {
  const playerRef = useRef<StreamingAudioPlayerHandle>(null);
  const regularAbort = useRef<AbortController | null>(null);
  const [text, setText] = useState(DEFAULT_TEXT);
  const [chosenLanguage, setChosenLanguage] = useState(DEFAULT_LANGUAGE);
  const language = useMemo(
    () => effectiveLanguage(chosenLanguage, languages),
    [chosenLanguage, languages],
  );
  // Sent only to a model that speaks more than English: older servers may not know the field.
  const sentLanguage = canChooseLanguage(languages) ? language : undefined;
  const [values, setValues] = useState<ParamValues>(defaultParamValues);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [advancedOpen, setAdvancedOpen] = useState(false);
  const [voice, setVoice] = useState<VoiceChoice>(DEFAULT_VOICE);
  const [busy, setBusy] = useState<'stream' | 'compare' | null>(null);
  const [comparison, setComparison] = useState<Comparison | null>(null);
  const [regularUrl, setRegularUrl] = useState<string | null>(null);

  useEffect(
    () => () => {
      regularAbort.current?.abort();
    },
    [],
  );
  useEffect(
    () => () => {
      if (regularUrl) URL.revokeObjectURL(regularUrl);
    },
    [regularUrl],
  );

  const showErrors = (found: FieldErrors): void => {
    setErrors(found);
    const first = Object.keys(found)[0];
    if (!first) return;
    if (ADVANCED_NAMES.has(first)) setAdvancedOpen(true);
    focusField(first);
  };

  /** The request for the current form, or null (with the problems shown) if it is not valid. */
  const buildRequest = (): StreamRequest | null => {
    const found: FieldErrors = {};
    if (!text.trim()) found.text = 'Type some text to speak.';
    const params: SynthesisParams = { text };
    if (sentLanguage) params.language = sentLanguage;
    for (const spec of ALL_PARAMS) {
      const parsed = parseParam(spec, values[spec.name]);
      if (!parsed.ok) found[spec.name] = parsed.error;
      else if (parsed.value !== undefined) params[spec.name] = parsed.value;
    }
    let audioPrompt: File | undefined;
    if (voice.mode === 'saved') {
      if (voice.savedId) params.voice = voice.savedId;
      else found.voice = 'Choose a saved voice, or pick another voice source.';
    } else if (voice.mode === 'prompt') {
      if (!voice.promptFile)
        found.audio_prompt = 'Choose an audio file to use as the voice prompt.';
      else {
        const problem = checkAudioFile(voice.promptFile);
        if (problem) found.audio_prompt = problem;
        else audioPrompt = voice.promptFile;
      }
    }
    if (Object.keys(found).length > 0) {
      showErrors(found);
      return null;
    }
    setErrors({});
    return audioPrompt ? { params, audioPrompt } : { params };
  };

  /** A 422 naming a field is shown at that field too. */
  const showServerError = (error: ChatterboxError | null): void => {
    if (error?.field) showErrors({ [error.field]: error.message });
  };

  const onPlay = (event?: { preventDefault: () => void }): void => {
    event?.preventDefault();
    const player = playerRef.current;
    const request = buildRequest();
    if (!player || !request || busy) return;
    setBusy('stream');
    revealPlayer();
    void player.play(request).then((result) => {
      showServerError(result.error);
      setBusy(null);
    });
  };

  const onCompare = async (): Promise<void> => {
    const player = playerRef.current;
    const request = buildRequest();
    if (!player || !request || busy) return;
    setBusy('compare');
    revealPlayer();
    setRegularUrl(null);
    setComparison({ stage: 'streaming', streaming: null, regular: null, error: null });
    try {
      const streamed = await player.play(request);
      if (streamed.outcome !== 'complete') {
        showServerError(streamed.error);
        setComparison(
          (c) =>
            c && {
              ...c,
              stage: streamed.outcome === 'cancelled' ? 'cancelled' : 'error',
              error: streamed.error ? `Streaming failed: ${streamed.error.message}` : null,
            },
        );
        return;
      }
      const streaming = {
        firstAudio: streamed.clientFirstAudio,
        complete: streamed.clientTotal,
        serverFirst: streamed.serverFirstChunk,
      };
      setComparison({ stage: 'regular', streaming, regular: null, error: null });
      // Sequential on purpose: a worker runs one generation at a time, so running both at
      // once would make one wait for the other and distort the comparison.
      const abort = new AbortController();
      regularAbort.current = abort;
      const sentAt = performance.now();
      const result = await api.synthesize(request.params, request.audioPrompt, {
        signal: abort.signal,
      });
      const firstAudio = (performance.now() - sentAt) / 1000;
      setRegularUrl(URL.createObjectURL(result.audio));
      setComparison({
        stage: 'done',
        streaming,
        regular: { firstAudio, serverTotal: result.totalLatency },
        error: null,
      });
    } catch (err) {
      if (isAbort(err)) {
        setComparison((c) => c && { ...c, stage: 'cancelled' });
      } else {
        const error = asChatterboxError(err);
        showServerError(error);
        setComparison(
          (c) => c && { ...c, stage: 'error', error: `Regular synthesis failed: ${error.message}` },
        );
      }
    } finally {
      regularAbort.current = null;
      setBusy(null);
    }
  };

  const onTextKey = (e: KeyboardEvent<HTMLTextAreaElement>): void => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) onPlay(e);
  };

  const setParam = (name: ParamName, value: string): void => {
    setValues((v) => ({ ...v, [name]: value }));
    setErrors((e) => (e[name] ? { ...e, [name]: undefined } : e));
  };

  const rows: ComparisonRow[] = comparison
    ? [
        {
          key: 'streaming',
          label: 'Streaming',
          firstAudio: comparison.streaming?.firstAudio ?? null,
          complete: comparison.streaming?.complete ?? null,
        },
        {
          key: 'regular',
          label: 'Regular',
          firstAudio: comparison.regular?.firstAudio ?? null,
          complete: null, // one file: its first audio is all of it
        },
      ]
    : [];
  const comparing = comparison?.stage === 'streaming' || comparison?.stage === 'regular';

  return (
    <div className="layout">
      <form className="card composer" onSubmit={onPlay} noValidate aria-label="Synthesis request">
        <div className={`field${errors.text ? ' has-error' : ''}`}>
          <label htmlFor={TEXT_ID} className="label-large">
            Text to speak
          </label>
          <textarea
            id={TEXT_ID}
            rows={5}
            lang={language}
            dir={textDirection(language)}
            maxLength={MAX_TEXT_CHARS}
            value={text}
            onChange={(e) => {
              setText(e.target.value);
              if (errors.text) setErrors((x) => ({ ...x, text: undefined }));
            }}
            onKeyDown={onTextKey}
            aria-invalid={errors.text ? true : undefined}
            aria-describedby="synthesis-text-hint"
          />
          <p id="synthesis-text-hint" className="hint">
            {text.length} / {MAX_TEXT_CHARS} characters · Ctrl+Enter plays
          </p>
          {errors.text && <p className="field-error">{errors.text}</p>}
        </div>

        <LanguagePicker
          id={LANGUAGE_ID}
          languages={languages}
          value={language}
          onChange={(code) => {
            setText((current) => textForLanguage(current, language, code, DEFAULT_TEXT));
            setChosenLanguage(code);
            setErrors((e) => ({ ...e, language: undefined, text: undefined }));
          }}
          error={errors.language}
        />

        <VoicePicker
          api={api}
          value={voice}
          onChange={(choice) => {
            setVoice(choice);
            setErrors((e) => ({ ...e, voice: undefined, audio_prompt: undefined }));
          }}
          error={errors.voice ?? errors.audio_prompt}
        />

        <ParameterControls
          values={values}
          errors={errors}
          onChange={setParam}
          advancedOpen={advancedOpen}
          onAdvancedToggle={setAdvancedOpen}
          onReset={() => {
            setValues(defaultParamValues());
            setErrors({});
          }}
        />

        <div className="actions form-actions">
          <button type="submit" className="button-primary" disabled={busy !== null}>
            {busy === 'stream' ? 'Streaming…' : 'Play'}
          </button>
          <button
            type="button"
            className="button-secondary"
            disabled={busy !== null}
            onClick={() => void onCompare()}
          >
            Compare streaming vs regular
          </button>
        </div>
      </form>

      <div className="side">
        <StreamingAudioPlayer ref={playerRef} api={api} />

        <section className="card comparison" aria-labelledby="comparison-title">
          <h2 id="comparison-title">Streaming vs regular</h2>
          <p className="hint">
            Compare synthesizes the same text twice, one after the other: streamed (playing as it
            arrives) and regular (one file when everything is done).
          </p>
          <p className="status" role="status" aria-live="polite" data-testid="comparison-status">
            {comparison === null && 'Not run yet.'}
            {comparison?.stage === 'streaming' && 'Step 1 of 2: streaming…'}
            {comparison?.stage === 'regular' &&
              'Step 2 of 2: regular synthesis, waiting for the whole file…'}
            {comparison?.stage === 'done' && 'Done.'}
            {comparison?.stage === 'cancelled' && 'Cancelled.'}
            {comparison?.stage === 'error' && 'The comparison did not finish.'}
          </p>
          {comparison?.error && (
            <p className="error" role="alert" data-testid="comparison-error">
              {comparison.error}
            </p>
          )}
          {comparison && <ComparisonChart rows={rows} />}
          {comparison?.stage === 'regular' && (
            <button
              type="button"
              className="button-secondary"
              onClick={() => regularAbort.current?.abort()}
            >
              Cancel
            </button>
          )}
          {regularUrl && !comparing && (
            <div className="field">
              <p className="hint" id="regular-audio-label">
                The regular result, to listen to:
              </p>
              <audio controls src={regularUrl} aria-labelledby="regular-audio-label" />
            </div>
          )}
        </section>
      </div>
    </div>
  );
}
