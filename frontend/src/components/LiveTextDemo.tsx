/**
 * "Live text": sends text a word at a time over the ElevenLabs-style WebSocket
 * (`/v1/text-to-speech/{voice}/multi-stream-input`), as a voice agent streams a language model's
 * reply, and plays the speech as it arrives; shows the time to first audio and, per sentence,
 * when its last word was sent and when its first audio started playing. When the model speaks
 * more than English, the language goes as the socket's `language_code`. The logic is
 * lib/liveTextSession (and lib/textStream); this component renders its view and wires it.
 */
import { useEffect, useId, useMemo, useState, type KeyboardEvent } from 'react';
import { LanguagePicker } from './LanguagePicker';
import { SessionStatus } from './SessionStatus';
import { useSessionTicks } from './useSessionTicks';
import { chatterboxAPI, type ChatterboxAPI, type VoiceInfo } from '../lib/api';
import { formatSeconds } from '../lib/format';
import {
  DEFAULT_LANGUAGE,
  NO_LANGUAGES,
  canChooseLanguage,
  effectiveLanguage,
  textDirection,
  textForLanguage,
} from '../lib/languages';
import {
  IDLE_LIVE_VIEW,
  LiveTextSession,
  isLiveActive,
  isLiveOpen,
  liveStatusText,
  type LiveTextView,
} from '../lib/liveTextSession';
import {
  DEFAULT_WORDS_PER_SECOND,
  MAX_WORDS_PER_SECOND,
  MIN_WORDS_PER_SECOND,
  sentenceLatency,
  splitWords,
} from '../lib/textStream';

export const LIVE_DEFAULT_TEXT =
  'Sure, I can help with that. Your order shipped this morning and should arrive on Thursday. ' +
  'Would you like me to send the tracking link by text message? Have a great day!';
export const LIVE_MAX_TEXT_CHARS = 4096;
const DEFAULT_VOICE_ID = 'default';

/** A time on the run's clock as seconds since the first word was sent. */
function since(view: LiveTextView, at: number | null): string {
  return at === null || view.origin === null ? '–' : formatSeconds((at - view.origin) / 1000);
}

export function LiveTextDemo({
  api = chatterboxAPI,
  languages = NO_LANGUAGES,
}: {
  api?: ChatterboxAPI;
  /** What the server's model speaks (ISO 639-1); a picker shows when that is more than one. */
  languages?: readonly string[];
}) {
  const uid = useId();
  const [text, setText] = useState(LIVE_DEFAULT_TEXT);
  const [chosenLanguage, setChosenLanguage] = useState(DEFAULT_LANGUAGE);
  const language = effectiveLanguage(chosenLanguage, languages);
  const [pace, setPace] = useState(DEFAULT_WORDS_PER_SECOND);
  const [voiceId, setVoiceId] = useState(DEFAULT_VOICE_ID);
  const [voices, setVoices] = useState<VoiceInfo[]>([]);
  const [textError, setTextError] = useState<string | null>(null);
  const [view, setView] = useState<LiveTextView>(IDLE_LIVE_VIEW);
  const session = useMemo(() => new LiveTextSession({ onView: setView }), []);
  // Sockets open with a token asked with the current key (the client changes with the key).
  useEffect(() => {
    session.setSocketTokens(() => api.socketToken());
  }, [session, api]);

  const open = isLiveOpen(view);
  const active = isLiveActive(view);

  useSessionTicks(session, active);

  useEffect(() => {
    let alive = true;
    api.listVoices().then(
      (list) => {
        if (alive) setVoices(list);
      },
      () => undefined, // the built-in voice still works; the other demo reports the error
    );
    return () => {
      alive = false;
    };
  }, [api]);

  // Voices saved in the other demo since: refresh when the list is opened.
  const refreshVoices = (): void => {
    api.listVoices().then(setVoices, () => undefined);
  };

  const start = (event?: { preventDefault: () => void }): void => {
    event?.preventDefault();
    if (open) return;
    if (splitWords(text).length === 0) {
      setTextError('Type some text to send.');
      document.getElementById(`${uid}-text`)?.focus();
      return;
    }
    setTextError(null);
    void session.start({
      text,
      wordsPerSecond: pace,
      voiceId,
      // Only to a model that speaks more than English: older servers may not know it.
      ...(canChooseLanguage(languages) ? { languageCode: language } : {}),
    });
  };

  const onTextKey = (e: KeyboardEvent<HTMLTextAreaElement>): void => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) start(e);
  };

  const canStop = open || (active && view.playback === 'playing');
  const selectedMissing = voiceId !== DEFAULT_VOICE_ID && !voices.some((v) => v.id === voiceId);

  return (
    <section className="card live-text" aria-labelledby={`${uid}-title`}>
      <div className="player-head">
        <h2 id={`${uid}-title`}>Live text</h2>
        {open && view.phase !== 'connecting' && view.playback === 'buffering' && (
          <span className="badge badge-buffering">
            <span className="spinner" aria-hidden="true" /> Buffering
          </span>
        )}
      </div>
      <p className="hint">
        Sends the text a word at a time over the WebSocket API (
        <code>/v1/text-to-speech/{'{voice}'}/multi-stream-input</code>), as a voice agent streams a
        language model&apos;s reply, and plays the speech as it arrives. Each sentence is generated
        once its last word is in.
      </p>

      <div className="live-grid">
        <form className="live-form" onSubmit={start} noValidate aria-label="Live text request">
          <div className={`field${textError ? ' has-error' : ''}`}>
            <label htmlFor={`${uid}-text`}>Text to send</label>
            <textarea
              id={`${uid}-text`}
              rows={5}
              lang={language}
              dir={textDirection(language)}
              maxLength={LIVE_MAX_TEXT_CHARS}
              value={text}
              disabled={open}
              onChange={(e) => {
                setText(e.target.value);
                if (textError) setTextError(null);
              }}
              onKeyDown={onTextKey}
              aria-invalid={textError ? true : undefined}
              aria-describedby={`${uid}-text-hint`}
            />
            <p id={`${uid}-text-hint`} className="hint">
              {splitWords(text).length} words · Ctrl+Enter starts
            </p>
            {textError && <p className="field-error">{textError}</p>}
          </div>

          <LanguagePicker
            id={`${uid}-language`}
            languages={languages}
            value={language}
            disabled={open}
            onChange={(code) => {
              setText((current) => textForLanguage(current, language, code, LIVE_DEFAULT_TEXT));
              setChosenLanguage(code);
              setTextError(null);
            }}
          />

          <div className="field">
            <div className="param-head">
              <label htmlFor={`${uid}-pace`}>Pace</label>
              <output htmlFor={`${uid}-pace`} className="live-pace-value">
                {pace} words/s
              </output>
            </div>
            <input
              id={`${uid}-pace`}
              type="range"
              min={MIN_WORDS_PER_SECOND}
              max={MAX_WORDS_PER_SECOND}
              step={1}
              value={pace}
              disabled={open}
              onChange={(e) => {
                setPace(Number(e.target.value));
              }}
              aria-valuetext={`${pace} words per second`}
              aria-describedby={`${uid}-pace-hint`}
            />
            <p id={`${uid}-pace-hint`} className="hint">
              How fast the text comes in: a language model writes 10–30 words a second; speech is
              about 2.5.
            </p>
          </div>

          <div className="field">
            <label htmlFor={`${uid}-voice`}>Voice</label>
            <select
              id={`${uid}-voice`}
              value={voiceId}
              disabled={open}
              onFocus={refreshVoices}
              onChange={(e) => {
                setVoiceId(e.target.value);
              }}
            >
              <option value={DEFAULT_VOICE_ID}>Built-in voice</option>
              {selectedMissing && <option value={voiceId}>{voiceId}</option>}
              {voices.length > 0 && (
                <optgroup label="Saved voices">
                  {voices.map((v) => (
                    <option key={v.id} value={v.id}>
                      {v.name}
                    </option>
                  ))}
                </optgroup>
              )}
            </select>
          </div>

          <div className="actions">
            <button type="submit" className="button-primary" disabled={open}>
              {open ? 'Speaking…' : 'Start'}
            </button>
            <button
              type="button"
              className="button-secondary"
              disabled={!canStop}
              onClick={() => {
                session.stop();
              }}
            >
              Stop
            </button>
          </div>
        </form>

        <div className="live-results">
          <SessionStatus
            testId="live"
            phase={view.phase}
            status={liveStatusText(view)}
            error={view.error}
          />
          {view.audioBlocked && view.audioMessages > 0 && view.phase !== 'stopped' && (
            <p className="notice">
              The browser is holding the sound back.{' '}
              <button
                type="button"
                className="button-secondary"
                onClick={() => {
                  session.enableSound();
                }}
              >
                Enable sound
              </button>
            </p>
          )}

          <dl className="metrics" data-testid="live-metrics">
            <div>
              <dt>Time to first audio</dt>
              <dd data-testid="live-ttfa">{formatSeconds(view.firstAudio)}</dd>
            </div>
            <div>
              <dt>Words sent</dt>
              <dd data-testid="live-words">
                {view.wordsSent} / {view.wordsTotal}
              </dd>
            </div>
            <div>
              <dt>Audio received</dt>
              <dd data-testid="live-received">{formatSeconds(view.receivedSeconds, 1)}</dd>
            </div>
          </dl>

          <table className="sentences" data-testid="live-sentences">
            <caption>Latency per sentence (seconds since the first word was sent)</caption>
            <thead>
              <tr>
                <th scope="col">Sentence</th>
                <th scope="col">Last word sent</th>
                <th scope="col">First audio plays</th>
                <th scope="col">Latency</th>
              </tr>
            </thead>
            <tbody>
              {view.sentences.length === 0 && (
                <tr>
                  <td colSpan={4} className="hint">
                    Press Start to see each sentence&apos;s timings.
                  </td>
                </tr>
              )}
              {view.sentences.map((s) => (
                <tr key={s.index} data-testid="sentence-row">
                  <td className="sentence-text">{s.text}</td>
                  <td data-testid="sentence-sent">{since(view, s.lastWordSentAt)}</td>
                  <td data-testid="sentence-plays">{since(view, s.firstAudioPlaysAt)}</td>
                  <td data-testid="sentence-latency">{formatSeconds(sentenceLatency(s))}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p className="hint">
            The stream carries no word timings; the server says where each sentence&apos;s audio
            begins, and that sample is when its audio starts.
          </p>
        </div>
      </div>
    </section>
  );
}
