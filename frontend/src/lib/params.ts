/**
 * The synthesis parameters the worker accepts, with the ranges it enforces (server/forms.py),
 * so the form can say what is wrong before sending and name the field when the server does.
 */

export type ParamName =
  | 'exaggeration'
  | 'temperature'
  | 'cfg_weight'
  | 'chunk_size'
  | 'seed'
  | 'max_new_tokens'
  | 'top_p'
  | 'top_k'
  | 'min_p'
  | 'repetition_penalty';

export interface ParamSpec {
  name: ParamName;
  label: string;
  min: number;
  max: number;
  /** false when the lower bound itself is not allowed, as for temperature's (0, 5]. */
  minInclusive: boolean;
  integer: boolean;
  /** Slider and keyboard step. */
  step: number;
  /** The server's default; advanced parameters have none here (left empty = server decides). */
  defaultValue?: number;
  hint: string;
}

function spec(
  name: ParamName,
  label: string,
  range: [number, number],
  options: Partial<Pick<ParamSpec, 'minInclusive' | 'integer' | 'step' | 'defaultValue'>> & {
    hint: string;
  },
): ParamSpec {
  return {
    name,
    label,
    min: range[0],
    max: range[1],
    minInclusive: options.minInclusive ?? true,
    integer: options.integer ?? false,
    step: options.step ?? (options.integer ? 1 : 0.05),
    ...(options.defaultValue === undefined ? {} : { defaultValue: options.defaultValue }),
    hint: options.hint,
  };
}

/** Always sent, shown as sliders. */
export const MAIN_PARAMS: readonly ParamSpec[] = [
  spec('exaggeration', 'Exaggeration', [0, 2], {
    defaultValue: 0.5,
    hint: 'Emotional intensity of the delivery.',
  }),
  spec('temperature', 'Temperature', [0, 5], {
    minInclusive: false,
    defaultValue: 0.8,
    hint: 'Higher is more varied, lower is steadier.',
  }),
  spec('cfg_weight', 'CFG weight', [0, 1], {
    defaultValue: 0.5,
    hint: 'How closely to follow the voice and text (original model).',
  }),
  spec('chunk_size', 'Chunk size (tokens)', [10, 200], {
    integer: true,
    step: 5,
    defaultValue: 50,
    hint: 'Speech tokens per streamed chunk: smaller starts sooner, larger is more efficient.',
  }),
];

/** Optional: empty means the server's default. */
export const ADVANCED_PARAMS: readonly ParamSpec[] = [
  spec('seed', 'Seed', [0, 2 ** 31 - 1], {
    integer: true,
    hint: 'The same seed and settings give the same speech.',
  }),
  spec('max_new_tokens', 'Max speech tokens', [1, 4000], {
    integer: true,
    hint: 'Caps the length: 25 tokens are about one second.',
  }),
  spec('top_p', 'Top p', [0, 1], { minInclusive: false, step: 0.01, hint: 'Nucleus sampling.' }),
  spec('top_k', 'Top k', [0, 10000], { integer: true, hint: '0 turns top-k off.' }),
  spec('min_p', 'Min p', [0, 1], { step: 0.01, hint: 'Drops unlikely tokens.' }),
  spec('repetition_penalty', 'Repetition penalty', [1, 3], {
    step: 0.1,
    hint: 'Discourages repeating the same tokens.',
  }),
];

export const ALL_PARAMS: readonly ParamSpec[] = [...MAIN_PARAMS, ...ADVANCED_PARAMS];

const LABELS: Record<string, string> = {
  ...Object.fromEntries(ALL_PARAMS.map((p) => [p.name, p.label])),
  text: 'Text',
  voice: 'Voice',
  audio_prompt: 'Audio prompt',
  audio: 'Voice recording',
  name: 'Voice name',
  language: 'Language',
  language_code: 'Language',
};

/** A person's name for a form field the server named. */
export function fieldLabel(field: string): string {
  return LABELS[field] ?? field.replace(/_/g, ' ');
}

/** The server's wording of a range: "number in (0, 5]", "integer in [10, 200]". */
export function allowedText(p: ParamSpec): string {
  const kind = p.integer ? 'integer' : 'number';
  return `${kind} in ${p.minInclusive ? '[' : '('}${p.min}, ${p.max}]`;
}

export type ParsedParam = { ok: true; value: number | undefined } | { ok: false; error: string };

/** Checks one form value; an empty advanced value is fine (the server's default applies). */
export function parseParam(p: ParamSpec, raw: string): ParsedParam {
  const text = raw.trim();
  const article = p.integer ? 'an' : 'a';
  const problem = `${p.label} must be ${article} ${allowedText(p)}`;
  if (text === '') {
    return p.defaultValue === undefined
      ? { ok: true, value: undefined }
      : { ok: false, error: problem };
  }
  const value = Number(text);
  if (!Number.isFinite(value) || (p.integer && !Number.isInteger(value))) {
    return { ok: false, error: problem };
  }
  const tooLow = p.minInclusive ? value < p.min : value <= p.min;
  if (tooLow || value > p.max) return { ok: false, error: problem };
  return { ok: true, value };
}

/** Form values as typed (strings; '' is "not given"). */
export type ParamValues = Record<ParamName, string>;
/** Problems to show, by form field name (a parameter, text, voice, audio_prompt). */
export type FieldErrors = Partial<Record<string, string>>;

export function defaultParamValues(): ParamValues {
  return Object.fromEntries(
    ALL_PARAMS.map((p) => [p.name, p.defaultValue === undefined ? '' : String(p.defaultValue)]),
  ) as ParamValues;
}

export function paramInputId(name: string): string {
  return `param-${name}`;
}
