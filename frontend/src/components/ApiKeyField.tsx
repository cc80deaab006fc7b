/**
 * The API key in the header: paste the key the service's operator gave you (kept in this
 * browser, sent with every request: lib/apiKey), or forget it. A service without keys needs
 * none, and the field can stay empty.
 */
import { useId, useState, type SyntheticEvent } from 'react';
import { apiKeyStore, type ApiKeyStore } from '../lib/apiKey';

export interface ApiKeyFieldProps {
  /** Called with the new key (null: forgotten) after it was saved. */
  onChange: (key: string | null) => void;
  store?: ApiKeyStore;
}

export function ApiKeyField({ onChange, store = apiKeyStore }: ApiKeyFieldProps) {
  const uid = useId();
  const [saved, setSaved] = useState(() => store.get() !== null);
  const [draft, setDraft] = useState('');

  const save = (event: SyntheticEvent): void => {
    event.preventDefault();
    if (!draft.trim()) return;
    store.set(draft);
    setDraft('');
    setSaved(true);
    onChange(store.get());
  };

  const forget = (): void => {
    store.clear();
    setSaved(false);
    onChange(null);
  };

  if (saved) {
    return (
      <div className="api-key">
        <span className="badge">API key saved in this browser</span>
        <button type="button" className="button-link" onClick={forget}>
          Forget key
        </button>
      </div>
    );
  }
  return (
    <form className="api-key" onSubmit={save}>
      <label htmlFor={`${uid}-key`}>API key</label>
      <input
        id={`${uid}-key`}
        type="password"
        autoComplete="off"
        spellCheck={false}
        placeholder="if the server asks for one"
        value={draft}
        onChange={(event) => {
          setDraft(event.target.value);
        }}
      />
      <button type="submit" className="button-secondary" disabled={!draft.trim()}>
        Save
      </button>
    </form>
  );
}
