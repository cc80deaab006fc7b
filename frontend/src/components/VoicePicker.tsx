/**
 * Which voice speaks: the model's built-in voice, a saved voice, or a one-off audio prompt;
 * plus saving a new voice from a recording (POST /voices) and deleting saved ones.
 */
import { useCallback, useEffect, useId, useState, type KeyboardEvent } from 'react';
import type { ChatterboxAPI, VoiceInfo } from '../lib/api';
import { asChatterboxError } from '../lib/errors';
import { AUDIO_ACCEPT, checkAudioFile, type VoiceChoice, type VoiceMode } from '../lib/voiceChoice';

export interface VoicePickerProps {
  api: ChatterboxAPI;
  value: VoiceChoice;
  onChange: (choice: VoiceChoice) => void;
  /** An error about the voice from the last request (unknown voice, unusable prompt). */
  error: string | undefined;
}

export function VoicePicker({ api, value, onChange, error }: VoicePickerProps) {
  const uid = useId();
  const [voices, setVoices] = useState<VoiceInfo[]>([]);
  const [listState, setListState] = useState<'loading' | 'ready' | 'error'>('loading');
  const [listError, setListError] = useState<string | null>(null);
  const [name, setName] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const [fileInputKey, setFileInputKey] = useState(0);
  const [saving, setSaving] = useState(false);
  const [saveMessage, setSaveMessage] = useState<{ kind: 'ok' | 'error'; text: string } | null>(
    null,
  );

  const refresh = useCallback(async (): Promise<VoiceInfo[]> => {
    try {
      const list = await api.listVoices();
      setVoices(list);
      setListState('ready');
      setListError(null);
      return list;
    } catch (err) {
      setListState('error');
      setListError(asChatterboxError(err).message);
      return [];
    }
  }, [api]);

  useEffect(() => {
    let alive = true;
    api.listVoices().then(
      (list) => {
        if (!alive) return;
        setVoices(list);
        setListState('ready');
      },
      (err: unknown) => {
        if (!alive) return;
        setListState('error');
        setListError(asChatterboxError(err).message);
      },
    );
    return () => {
      alive = false;
    };
  }, [api]);

  const save = async (): Promise<void> => {
    if (!name.trim()) {
      setSaveMessage({ kind: 'error', text: 'Give the voice a name.' });
      return;
    }
    if (!file) {
      setSaveMessage({
        kind: 'error',
        text: 'Choose a recording of the voice (more than 5 seconds).',
      });
      return;
    }
    const problem = checkAudioFile(file);
    if (problem) {
      setSaveMessage({ kind: 'error', text: problem });
      return;
    }
    setSaving(true);
    setSaveMessage(null);
    try {
      const voice = await api.createVoice(name.trim(), file);
      await refresh();
      onChange({ ...value, mode: 'saved', savedId: voice.id });
      setName('');
      setFile(null);
      setFileInputKey((k) => k + 1);
      setSaveMessage({ kind: 'ok', text: `Saved "${voice.name}" and selected it.` });
    } catch (err) {
      setSaveMessage({ kind: 'error', text: asChatterboxError(err).message });
    } finally {
      setSaving(false);
    }
  };

  const remove = async (voice: VoiceInfo): Promise<void> => {
    try {
      await api.deleteVoice(voice.id);
      const list = await refresh();
      if (value.savedId === voice.id) onChange({ ...value, savedId: list[0]?.id ?? '' });
      setSaveMessage({ kind: 'ok', text: `Deleted "${voice.name}".` });
    } catch (err) {
      setSaveMessage({ kind: 'error', text: asChatterboxError(err).message });
    }
  };

  // Enter in the name box saves the voice instead of submitting the synthesis form.
  const onNameKey = (e: KeyboardEvent<HTMLInputElement>): void => {
    if (e.key === 'Enter') {
      e.preventDefault();
      void save();
    }
  };

  const selected = voices.find((v) => v.id === value.savedId);
  const modes: Array<{ mode: VoiceMode; label: string }> = [
    { mode: 'default', label: 'Built-in voice' },
    { mode: 'saved', label: 'Saved voice' },
    { mode: 'prompt', label: 'One-off audio prompt' },
  ];

  return (
    <fieldset className="voice">
      <legend>Voice</legend>
      <div className="segmented" role="radiogroup" aria-label="Voice source">
        {modes.map(({ mode, label }) => (
          <label key={mode} className={value.mode === mode ? 'selected' : undefined}>
            <input
              type="radio"
              name={`${uid}-mode`}
              value={mode}
              checked={value.mode === mode}
              onChange={() => {
                onChange({
                  ...value,
                  mode,
                  savedId:
                    mode === 'saved' && !value.savedId ? (voices[0]?.id ?? '') : value.savedId,
                });
              }}
            />
            {label}
          </label>
        ))}
      </div>

      {value.mode === 'saved' && (
        <div className="field">
          <label htmlFor={`${uid}-saved`}>Saved voice</label>
          {listState === 'error' && <p className="field-error">{listError}</p>}
          {listState === 'ready' && voices.length === 0 ? (
            <p className="hint">No saved voices yet: save one below.</p>
          ) : (
            <div className="inline">
              <select
                id={`${uid}-saved`}
                value={value.savedId}
                onChange={(e) => {
                  onChange({ ...value, savedId: e.target.value });
                }}
              >
                {!selected && <option value="">Choose a voice…</option>}
                {voices.map((v) => (
                  <option key={v.id} value={v.id}>
                    {v.name}
                  </option>
                ))}
              </select>
              {selected && (
                <button
                  type="button"
                  className="button-secondary"
                  onClick={() => void remove(selected)}
                  aria-label={`Delete saved voice ${selected.name}`}
                >
                  Delete
                </button>
              )}
            </div>
          )}
        </div>
      )}

      {value.mode === 'prompt' && (
        <div className="field">
          <label htmlFor={`${uid}-prompt`}>Audio prompt (used for this request only)</label>
          <input
            id={`${uid}-prompt`}
            type="file"
            accept={AUDIO_ACCEPT}
            data-testid="prompt-file"
            onChange={(e) => {
              onChange({ ...value, promptFile: e.target.files?.[0] ?? null });
            }}
          />
          <p className="hint">A clear recording of one speaker, longer than 5 seconds.</p>
        </div>
      )}

      {error && (
        <p className="field-error" role="alert" data-testid="voice-error">
          {error}
        </p>
      )}

      <details className="save-voice">
        <summary>Save a new voice</summary>
        <div className="field">
          <label htmlFor={`${uid}-name`}>Name</label>
          <input
            id={`${uid}-name`}
            type="text"
            maxLength={64}
            value={name}
            onChange={(e) => {
              setName(e.target.value);
            }}
            onKeyDown={onNameKey}
          />
        </div>
        <div className="field">
          <label htmlFor={`${uid}-file`}>Recording (more than 5 seconds)</label>
          <input
            key={fileInputKey}
            id={`${uid}-file`}
            type="file"
            accept={AUDIO_ACCEPT}
            data-testid="voice-file"
            onChange={(e) => {
              setFile(e.target.files?.[0] ?? null);
            }}
          />
        </div>
        <button
          type="button"
          className="button-secondary"
          onClick={() => void save()}
          disabled={saving}
        >
          {saving ? 'Saving…' : 'Save voice'}
        </button>
        <p
          className={saveMessage?.kind === 'error' ? 'field-error' : 'hint'}
          role="status"
          aria-live="polite"
          data-testid="voice-save-status"
        >
          {saveMessage?.text}
        </p>
      </details>
    </fieldset>
  );
}
