import { chatterboxAPI } from './lib/api';
import { HealthBadge } from './components/HealthBadge';
import { LiveTextDemo } from './components/LiveTextDemo';
import { StreamingDemo } from './components/StreamingDemo';

export function App() {
  return (
    <>
      <header className="topbar">
        <div>
          <h1>Chatterbox streaming TTS</h1>
          <p className="tagline">Hear speech while it is still being generated.</p>
        </div>
        <HealthBadge api={chatterboxAPI} />
      </header>
      <main id="main">
        <StreamingDemo api={chatterboxAPI} />
        <LiveTextDemo api={chatterboxAPI} />
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
