/**
 * Plays a /synthesize-stream response while it arrives, shows live metrics, progress and
 * buffering, and offers the received audio as a WAV download. The logic (decoding, gapless
 * scheduling, the view state) is lib/streamSession; this component renders its view and wires it
 * to React. Started through its handle (`play`) from a click or key handler, so the AudioContext
 * can be resumed in the gesture.
 */
import { useImperativeHandle, useMemo, useState, type Ref } from 'react';
import { SessionStatus } from './SessionStatus';
import { useSessionTicks } from './useSessionTicks';
import { chatterboxAPI, type ChatterboxAPI } from '../lib/api';
import { formatRtf, formatSeconds } from '../lib/format';
import {
  IDLE_VIEW,
  StreamSession,
  isActive,
  isStreamOpen,
  statusText,
  type StreamRequest,
  type StreamResult,
  type StreamView,
} from '../lib/streamSession';

export type { StreamRequest, StreamResult } from '../lib/streamSession';

export interface StreamingAudioPlayerHandle {
  play: (request: StreamRequest) => Promise<StreamResult>;
  stop: () => void;
}

export interface StreamingAudioPlayerProps {
  api?: ChatterboxAPI;
  ref?: Ref<StreamingAudioPlayerHandle>;
  /** File name for the download. */
  downloadName?: string;
}

export function StreamingAudioPlayer({
  api = chatterboxAPI,
  ref,
  downloadName = 'chatterbox-stream.wav',
}: StreamingAudioPlayerProps) {
  const [view, setView] = useState<StreamView>(IDLE_VIEW);
  const session = useMemo(() => new StreamSession({ api, onView: setView }), [api]);

  const streamOpen = isStreamOpen(view);
  const active = isActive(view);

  useSessionTicks(session, active);

  useImperativeHandle(
    ref,
    () => ({
      play: (request) => session.play(request),
      stop: () => {
        session.stop();
      },
    }),
    [session],
  );

  const stop = (): void => {
    session.stop();
  };

  const download = (): void => {
    const blob = session.wav();
    const url = URL.createObjectURL(blob);
    const link = document.createElement('a');
    link.href = url;
    link.download = downloadName;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => {
      URL.revokeObjectURL(url);
    }, 30_000);
  };

  const enableSound = (): void => {
    session.enableSound();
  };

  const { metrics, done } = view;
  const total = Math.max(view.receivedSeconds, 0.001);
  const playedPct = Math.min(100, (view.playedSeconds / total) * 100);
  const buffering = streamOpen && (view.playback === 'buffering' || view.playback === 'waiting');
  const canStop = streamOpen || (active && view.playback === 'playing');
  const partial = view.phase !== 'complete';
  const progressText = `${formatSeconds(view.playedSeconds, 1)} played of ${formatSeconds(
    view.receivedSeconds,
    1,
  )} received`;

  return (
    <section className="card player" aria-labelledby="player-title">
      <div className="player-head">
        <h2 id="player-title">Streaming player</h2>
        {buffering && view.phase !== 'connecting' && (
          <span className="badge badge-buffering" data-testid="buffering-badge">
            <span className="spinner" aria-hidden="true" /> Buffering
          </span>
        )}
      </div>
      <SessionStatus
        testId="player"
        phase={view.phase}
        status={statusText(view)}
        error={
          view.error && (
            <>
              {view.error}
              {view.chunks > 0 && ' The audio received so far can still be downloaded.'}
            </>
          )
        }
      />
      {view.audioBlocked && view.chunks > 0 && view.phase !== 'stopped' && (
        <p className="notice">
          The browser is holding the sound back.{' '}
          <button type="button" className="button-secondary" onClick={enableSound}>
            Enable sound
          </button>
        </p>
      )}

      <div
        className="progress"
        role="progressbar"
        aria-label="Playback progress"
        aria-valuemin={0}
        aria-valuemax={Number(view.receivedSeconds.toFixed(1))}
        aria-valuenow={Number(view.playedSeconds.toFixed(1))}
        aria-valuetext={progressText}
      >
        <div className="progress-received" style={{ width: view.chunks > 0 ? '100%' : '0%' }} />
        <div className="progress-played" style={{ width: `${playedPct}%` }} />
      </div>
      <p className="progress-text">
        {progressText} · {view.chunks} {view.chunks === 1 ? 'chunk' : 'chunks'}
      </p>

      <dl className="metrics" data-testid="metrics">
        <div>
          <dt>Time to first audio</dt>
          <dd data-testid="metric-ttfa">{formatSeconds(view.clientFirstAudio)}</dd>
        </div>
        <div>
          <dt>First chunk (server)</dt>
          <dd>{formatSeconds(metrics?.first_chunk_latency)}</dd>
        </div>
        <div>
          <dt>Real-time factor</dt>
          <dd title="Generation time divided by audio duration; below 1 is faster than real time">
            {formatRtf(metrics?.rtf)}
          </dd>
        </div>
        <div>
          <dt>Chunks</dt>
          <dd data-testid="metric-chunks">{view.chunks}</dd>
        </div>
        <div>
          <dt>Audio duration</dt>
          <dd data-testid="metric-duration">{formatSeconds(metrics?.total_audio_duration)}</dd>
        </div>
        <div>
          <dt>Buffering pauses</dt>
          <dd data-testid="metric-underruns">{view.underruns}</dd>
        </div>
      </dl>
      {done?.metrics?.token_cap_hit && (
        <p className="notice">The length cap was reached, so the speech may end early.</p>
      )}

      <div className="actions">
        <button type="button" onClick={stop} disabled={!canStop} className="button-secondary">
          Stop
        </button>
        <button
          type="button"
          onClick={download}
          disabled={view.chunks === 0 || streamOpen}
          className="button-secondary"
        >
          Download WAV{partial && view.chunks > 0 && !streamOpen ? ' (partial)' : ''}
        </button>
      </div>
    </section>
  );
}
