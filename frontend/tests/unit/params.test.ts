import { describe, expect, it } from 'vitest';
import {
  ALL_PARAMS,
  allowedText,
  defaultParamValues,
  fieldLabel,
  parseParam,
} from '../../src/lib/params';

function spec(name: string) {
  const found = ALL_PARAMS.find((p) => p.name === name);
  if (!found) throw new Error(name);
  return found;
}

describe('params', () => {
  it('words ranges exactly as the server does', () => {
    expect(allowedText(spec('temperature'))).toBe('number in (0, 5]');
    expect(allowedText(spec('exaggeration'))).toBe('number in [0, 2]');
    expect(allowedText(spec('chunk_size'))).toBe('integer in [10, 200]');
    expect(allowedText(spec('top_p'))).toBe('number in (0, 1]');
    expect(allowedText(spec('max_new_tokens'))).toBe('integer in [1, 4000]');
  });

  it('accepts values in range, including inclusive bounds', () => {
    expect(parseParam(spec('temperature'), '5')).toEqual({ ok: true, value: 5 });
    expect(parseParam(spec('exaggeration'), ' 0 ')).toEqual({ ok: true, value: 0 });
    expect(parseParam(spec('chunk_size'), '10')).toEqual({ ok: true, value: 10 });
  });

  it('rejects out-of-range, exclusive bounds, non-integers and junk in plain words', () => {
    expect(parseParam(spec('temperature'), '0')).toEqual({
      ok: false,
      error: 'Temperature must be a number in (0, 5]',
    });
    expect(parseParam(spec('temperature'), '5.01').ok).toBe(false);
    expect(parseParam(spec('chunk_size'), '12.5')).toEqual({
      ok: false,
      error: 'Chunk size (tokens) must be an integer in [10, 200]',
    });
    expect(parseParam(spec('cfg_weight'), 'abc').ok).toBe(false);
    expect(parseParam(spec('cfg_weight'), 'Infinity').ok).toBe(false);
  });

  it('lets advanced values stay empty (server default) but not main ones', () => {
    expect(parseParam(spec('seed'), '')).toEqual({ ok: true, value: undefined });
    expect(parseParam(spec('temperature'), '').ok).toBe(false);
  });

  it('has defaults for the main parameters only', () => {
    const values = defaultParamValues();
    expect(values.temperature).toBe('0.8');
    expect(values.chunk_size).toBe('50');
    expect(values.seed).toBe('');
  });

  it('names fields for people', () => {
    expect(fieldLabel('cfg_weight')).toBe('CFG weight');
    expect(fieldLabel('audio_prompt')).toBe('Audio prompt');
    expect(fieldLabel('something_else')).toBe('something else');
  });
});
