/**
 * A Web Audio test double: records what the player asks of it (buffers, start/stop times,
 * gain automation) on a clock the test moves by hand.
 */
import type {
  AudioBufferLike,
  AudioContextLike,
  AudioNodeLike,
  AudioParamLike,
  BufferSourceLike,
  GainNodeLike,
} from '../../src/lib/playback';

export type ParamEvent =
  { type: 'set'; value: number; time: number } | { type: 'ramp'; value: number; time: number };

export class FakeParam implements AudioParamLike {
  events: ParamEvent[] = [];
  constructor(readonly defaultValue: number) {}
  setValueAtTime(value: number, time: number): this {
    this.events.push({ type: 'set', value, time });
    return this;
  }
  linearRampToValueAtTime(value: number, time: number): this {
    this.events.push({ type: 'ramp', value, time });
    return this;
  }
  cancelScheduledValues(time: number): this {
    this.events = this.events.filter((e) => e.time < time);
    return this;
  }
  /** The automation's value at `time` (set and linear ramps, as Web Audio computes them). */
  valueAt(time: number): number {
    let value = this.defaultValue;
    let prevTime = 0;
    for (const event of [...this.events].sort((a, b) => a.time - b.time)) {
      if (event.time <= time) {
        value = event.value;
        prevTime = event.time;
        continue;
      }
      if (event.type === 'ramp') {
        const span = event.time - prevTime;
        return span <= 0 ? event.value : value + ((event.value - value) * (time - prevTime)) / span;
      }
      break;
    }
    return value;
  }
}

export class FakeNode implements AudioNodeLike {
  connections: AudioNodeLike[] = [];
  disconnected = false;
  connect(destination: AudioNodeLike): AudioNodeLike {
    this.connections.push(destination);
    return destination;
  }
  disconnect(): void {
    this.disconnected = true;
    this.connections = [];
  }
}

export class FakeGain extends FakeNode implements GainNodeLike {
  readonly gain = new FakeParam(1);
}

export class FakeBuffer implements AudioBufferLike {
  readonly data: Float32Array;
  constructor(
    readonly channels: number,
    readonly length: number,
    readonly sampleRate: number,
  ) {
    this.data = new Float32Array(length);
  }
  get duration(): number {
    return this.length / this.sampleRate;
  }
  copyToChannel(source: Float32Array, channel: number): void {
    if (channel !== 0) throw new Error('mono only');
    this.data.set(source);
  }
}

export class FakeSource extends FakeNode implements BufferSourceLike {
  buffer: FakeBuffer | null = null;
  startedAt: number | null = null;
  stoppedAt: number | null = null;
  gain: FakeGain | null = null;
  start(when = 0): void {
    if (this.startedAt !== null) throw new Error('start() called twice');
    this.startedAt = when;
  }
  stop(when = 0): void {
    this.stoppedAt = when;
  }
  override connect(destination: AudioNodeLike): AudioNodeLike {
    if (destination instanceof FakeGain) this.gain = destination;
    return super.connect(destination);
  }
}

export class FakeAudioContext implements AudioContextLike {
  currentTime = 0;
  readonly destination = new FakeNode();
  readonly sources: FakeSource[] = [];
  readonly gains: FakeGain[] = [];
  constructor(readonly sampleRate = 24000) {}
  createBuffer(channels: number, length: number, sampleRate: number): FakeBuffer {
    if (length <= 0) throw new Error('NotSupportedError: zero-length buffer');
    return new FakeBuffer(channels, length, sampleRate);
  }
  createBufferSource(): FakeSource {
    const source = new FakeSource();
    this.sources.push(source);
    return source;
  }
  createGain(): FakeGain {
    const gain = new FakeGain();
    this.gains.push(gain);
    return gain;
  }

  /**
   * What the listener hears: every source's buffer times its gain, mixed on a sample grid from
   * 0 to `seconds`. Lets tests check for gaps, overlaps and clicks in the output itself.
   */
  render(seconds: number): Float32Array {
    const out = new Float32Array(Math.ceil(seconds * this.sampleRate));
    for (const source of this.sources) {
      const { buffer, startedAt } = source;
      if (!buffer || startedAt === null) continue;
      const first = Math.round(startedAt * this.sampleRate);
      const stopFrame =
        source.stoppedAt === null ? Infinity : Math.round(source.stoppedAt * this.sampleRate);
      for (let i = 0; i < buffer.length; i++) {
        const frame = first + i;
        if (frame >= out.length || frame >= stopFrame) break;
        const gain = source.gain?.gain.valueAt(frame / this.sampleRate) ?? 1;
        out[frame] = (out[frame] ?? 0) + (buffer.data[i] ?? 0) * gain;
      }
    }
    return out;
  }
}
