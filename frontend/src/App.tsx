import { useCallback, useMemo, useState } from 'react';
import { createChatterboxAPI, type HealthInfo } from './lib/api';
import { apiKeyStore } from './lib/apiKey';
import { languagesFromHealth } from './lib/languages';
import { ApiKeyField } from './components/ApiKeyField';
import { HealthBadge } from './components/HealthBadge';
import { LiveTextDemo } from './components/LiveTextDemo';
import { StreamingDemo } from './components/StreamingDemo';

export function App() {
  const [apiKey, setApiKey] = useState(() => apiKeyStore.get());
  // A new client when the key changes, so what was loaded with the old one (voices) reloads.
  const api = useMemo(() => createChatterboxAPI({ apiKey: () => apiKey }), [apiKey]);
  // What the model speaks, from the latest /health that says (a loading worker does not).
  const [languages, setLanguages] = useState<string[]>([]);
  const onHealth = useCallback((info: HealthInfo) => {
    const listed = languagesFromHealth(info);
    if (listed.length === 0) return;
    setLanguages((known) => (known.join() === listed.join() ? known : listed));
  }, []);
  return (
    <>
      <header className="topbar">
        <div>
          <h1>Chatterbox streaming TTS</h1>
          <p className="tagline">Hear speech while it is still being generated.</p>
        </div>
        <ApiKeyField onChange={setApiKey} />
        <HealthBadge api={api} onHealth={onHealth} />
      </header>
      <main id="main">
        <StreamingDemo api={api} languages={languages} />
        <LiveTextDemo api={api} languages={languages} />
      </main>
      <footer className="footer">
        <p>
          Chatterbox by Resemble AI · audio is watermarked · API:{' '}
          <code>POST /synthesize-stream</code> ·{' '}
          <code>/v1/text-to-speech/{'{voice}'}/multi-stream-input</code>
        </p>
      </footer>
    </>
  );
}
