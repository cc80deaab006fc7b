/**
 * Plays a /synthesize-stream response while it arrives: decodes each base64 PCM chunk and
 * schedules it gaplessly on the audio clock (lib/playback), shows live metrics, progress and
 * buffering, and offers the received audio as a WAV download. Started through its handle
 * (`play`) from a click or key handler, so the AudioContext can be resumed in the gesture.
 */
import { useCallback, useEffect, useImperativeHandle, useRef, useState, type Ref } from 'react';
import {
  chatterboxAPI,
  type ChatterboxAPI,
  type DoneEvent,
  type StreamHandle,
  type StreamMetrics,
  type StreamOutcome,
  type SynthesisParams,
} from '../lib/api';
import { audioSupported, getAudioContext, unlockAudio } from '../lib/audioContext';
import { ChatterboxError } from '../lib/errors';
import { formatRtf, formatSeconds } from '../lib/format';
import { decodePcmChunk, int16ToFloat32 } from '../lib/pcm';
import { StreamingPlayback } from '../lib/playback';
import type { PlaybackState } from '../lib/scheduler';
import { publishTrace, type PlaybackTrace } from '../lib/trace';
import { wavBlob } from '../lib/wav';

export interface StreamRequest {
  params: SynthesisParams;
  audioPrompt?: Blob;
}

export interface StreamResult {
  outcome: StreamOutcome;
  error: ChatterboxError | null;
  /** Seconds from sending the request to the first audio being scheduled, in this browser. */
  clientFirstAudio: number | null;
  /** Seconds from sending the request to the end of the stream, in this browser. */
  clientTotal: number;
  serverFirstChunk: number | null;
  audioSeconds: number;
  chunks: number;
}

export interface StreamingAudioPlayerHandle {
  play: (request: StreamRequest) => Promise<StreamResult>;
  stop: () => void;
}

type Phase = 'idle' | 'connecting' | 'streaming' | 'complete' | 'stopped' | 'error';

interface View {
  phase: Phase;
  playback: PlaybackState;
  chunks: number;
  receivedSeconds: number;
  playedSeconds: number;
  metrics: StreamMetrics | null;
  done: DoneEvent | null;
  clientFirstAudio: number | null;
  underruns: number;
  error: string | null;
  audioBlocked: boolean;
}

const IDLE: View = {
  phase: 'idle',
  playback: 'idle',
  chunks: 0,
  receivedSeconds: 0,
  playedSeconds: 0,
  metrics: null,
  done: null,
  clientFirstAudio: null,
  underruns: 0,
  error: null,
  audioBlocked: false,
};

const POLL_MS = 100;

function statusText(view: View): string {
  const { phase, playback } = view;
  switch (phase) {
    case 'idle':
      return 'Ready. Type some text and press Play.';
    case 'connecting':
      return 'Connecting to the server…';
    case 'stopped':
      return 'Stopped.';
    case 'error':
      return view.chunks > 0 ? 'Stopped by an error.' : 'Could not synthesize.';
    case 'streaming':
      if (playback === 'buffering') return 'Buffering: waiting for more audio from the server…';
      if (playback === 'playing') return 'Playing while the rest is generated…';
      return 'Starting playback…';
    case 'complete':
      if (playback === 'playing' || playback === 'waiting') return 'Playing (all audio received).';
      return 'Finished.';
  }
}

function isActive(view: View): boolean {
  return (
    view.phase === 'connecting' ||
    view.phase === 'streaming' ||
    ((view.phase === 'complete' || view.phase === 'error') &&
      view.playback !== 'ended' &&
      view.playback !== 'idle')
  );
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
  const [view, setView] = useState<View>(IDLE);
  const playbackRef = useRef<StreamingPlayback | null>(null);
  const handleRef = useRef<StreamHandle | null>(null);
  const pcmRef = useRef<Int16Array[]>([]);
  const sampleRateRef = useRef<number>(24000);
  const traceRef = useRef<PlaybackTrace | null>(null);

  const streamOpen = view.phase === 'connecting' || view.phase === 'streaming';
  const active = isActive(view);

  // While something can change, follow the audio clock: progress, playing/buffering/ended.
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(() => {
      const playback = playbackRef.current;
      if (!playback) return;
      const state = playback.state(streamOpen);
      const played = playback.playedSeconds();
      const blocked = getAudioContext().state !== 'running';
      setView((v) =>
        v.playback === state && v.playedSeconds === played && v.audioBlocked === blocked
          ? v
          : { ...v, playback: state, playedSeconds: played, audioBlocked: blocked },
      );
      if (traceRef.current) {
        traceRef.current.playback = state;
        traceRef.current.contextState = getAudioContext().state;
      }
    }, POLL_MS);
    return () => {
      clearInterval(timer);
    };
  }, [active, streamOpen]);

  const halt = useCallback(() => {
    handleRef.current?.cancel();
    handleRef.current = null;
    playbackRef.current?.stop();
  }, []);

  useEffect(() => halt, [halt]);

  const stop = useCallback(() => {
    const wasActive = handleRef.current !== null || playbackRef.current?.state(false) === 'playing';
    halt();
    if (traceRef.current) traceRef.current.phase = 'stopped';
    setView((v) =>
      wasActive || v.phase === 'connecting' || v.phase === 'streaming'
        ? { ...v, phase: 'stopped', playback: 'ended' }
        : v,
    );
  }, [halt]);

  const play = useCallback(
    (request: StreamRequest): Promise<StreamResult> => {
      halt();
      if (!audioSupported()) {
        const error = new ChatterboxError('server', 'This browser cannot play streamed audio.');
        setView({ ...IDLE, phase: 'error', error: error.message });
        return Promise.resolve({
          outcome: 'error',
          error,
          clientFirstAudio: null,
          clientTotal: 0,
          serverFirstChunk: null,
          audioSeconds: 0,
          chunks: 0,
        });
      }
      // Must happen before any await: resuming is only allowed inside the user's gesture.
      const context = unlockAudio();
      const playback = new StreamingPlayback(context);
      playbackRef.current = playback;
      pcmRef.current = [];
      const trace: PlaybackTrace = {
        contextSampleRate: context.sampleRate,
        contextState: context.state,
        streamSampleRate: null,
        chunks: [],
        underruns: 0,
        phase: 'connecting',
        playback: 'waiting',
        error: null,
      };
      traceRef.current = trace;
      publishTrace(trace);
      setView({ ...IDLE, phase: 'connecting', playback: 'waiting' });

      const sentAt = performance.now();
      const elapsed = (): number => (performance.now() - sentAt) / 1000;
      let firstAudio: number | null = null;
      let serverFirst: number | null = null;
      let chunks = 0;
      let received = 0;
      let failure: ChatterboxError | null = null;

      const handle = api.synthesizeStream(request.params, request.audioPrompt, {
        onChunk: (chunk) => {
          let samples: Int16Array;
          try {
            samples = decodePcmChunk(chunk.audio_chunk);
          } catch {
            throw new ChatterboxError('stream', 'The server sent audio that could not be decoded.');
          }
          pcmRef.current.push(samples);
          sampleRateRef.current = chunk.sample_rate;
          const placement = playback.enqueue(int16ToFloat32(samples), chunk.sample_rate);
          firstAudio ??= elapsed();
          serverFirst ??= chunk.metrics.first_chunk_latency;
          chunks += 1;
          received += samples.length / chunk.sample_rate;
          if (placement) {
            trace.chunks.push({ ...placement, chunkId: chunk.chunk_id, samples: samples.length });
          }
          trace.streamSampleRate = chunk.sample_rate;
          trace.underruns = playback.scheduler.underruns;
          trace.phase = 'streaming';
          const snapshot = { chunks, received, firstAudio };
          setView((v) => ({
            ...v,
            phase: v.phase === 'connecting' ? 'streaming' : v.phase,
            chunks: snapshot.chunks,
            receivedSeconds: snapshot.received,
            clientFirstAudio: snapshot.firstAudio,
            metrics: chunk.metrics,
            underruns: playback.scheduler.underruns,
          }));
        },
        onComplete: (done) => {
          trace.phase = 'complete';
          setView((v) => ({ ...v, phase: 'complete', done, metrics: done.metrics ?? v.metrics }));
        },
        onError: (error) => {
          failure = error;
          trace.phase = 'error';
          trace.error = error.message;
          setView((v) => ({ ...v, phase: 'error', error: error.message }));
        },
      });
      handleRef.current = handle;

      return handle.finished.then((outcome) => {
        if (handleRef.current === handle) handleRef.current = null;
        return {
          outcome,
          error: failure,
          clientFirstAudio: firstAudio,
          clientTotal: elapsed(),
          serverFirstChunk: serverFirst,
          audioSeconds: received,
          chunks,
        };
      });
    },
    [api, halt],
  );

  useImperativeHandle(ref, () => ({ play, stop }), [play, stop]);

  const download = (): void => {
    const blob = wavBlob(pcmRef.current, sampleRateRef.current);
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
    getAudioContext()
      .resume()
      .catch(() => undefined);
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
      {!audioSupported() && (
        <p className="notice" role="alert">
          This browser has no Web Audio support, so streamed audio cannot be played here.
        </p>
      )}
      <p
        className="status"
        role="status"
        aria-live="polite"
        data-testid="player-status"
        data-phase={view.phase}
      >
        {statusText(view)}
      </p>
      {view.error && (
        <p className="error" role="alert" data-testid="player-error">
          {view.error}
          {view.chunks > 0 && ' The audio received so far can still be downloaded.'}
        </p>
      )}
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
