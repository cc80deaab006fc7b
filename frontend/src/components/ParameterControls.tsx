/** The synthesis parameters: sliders for the main ones, number fields for the advanced ones. */
import {
  ADVANCED_PARAMS,
  MAIN_PARAMS,
  allowedText,
  paramInputId,
  type FieldErrors,
  type ParamName,
  type ParamSpec,
  type ParamValues,
} from '../lib/params';

interface ControlProps {
  spec: ParamSpec;
  value: string;
  error: string | undefined;
  onChange: (name: ParamName, value: string) => void;
}

/** The ids of a parameter's input and of the texts that describe it. */
function fieldIds(spec: ParamSpec, error: string | undefined) {
  const input = paramInputId(spec.name);
  const hint = `${input}-hint`;
  const errorText = `${input}-error`;
  return { input, hint, error: errorText, describedBy: error ? `${hint} ${errorText}` : hint };
}

/** Under every parameter: its hint and allowed range, and its error if it has one. */
function FieldNotes({
  spec,
  ids,
  error,
}: {
  spec: ParamSpec;
  ids: ReturnType<typeof fieldIds>;
  error: string | undefined;
}) {
  return (
    <>
      <p id={ids.hint} className="hint">
        {spec.hint} <span className="range">({allowedText(spec)})</span>
      </p>
      {error && (
        <p id={ids.error} className="field-error">
          {error}
        </p>
      )}
    </>
  );
}

function Slider({ spec, value, error, onChange }: ControlProps) {
  const ids = fieldIds(spec, error);
  const id = ids.input;
  const sliderMin = spec.minInclusive ? spec.min : spec.min + spec.step;
  const numeric = Number(value);
  const sliderValue =
    value.trim() !== '' && Number.isFinite(numeric) ? numeric : (spec.defaultValue ?? sliderMin);
  return (
    <div className={`field param${error ? ' has-error' : ''}`}>
      <div className="param-head">
        <label htmlFor={id}>{spec.label}</label>
        <input
          type="number"
          className="param-number"
          aria-label={`${spec.label}, exact value`}
          min={sliderMin}
          max={spec.max}
          step={spec.step}
          value={value}
          aria-invalid={error ? true : undefined}
          aria-describedby={ids.describedBy}
          onChange={(e) => {
            onChange(spec.name, e.target.value);
          }}
        />
      </div>
      <input
        id={id}
        type="range"
        min={sliderMin}
        max={spec.max}
        step={spec.step}
        value={sliderValue}
        aria-describedby={ids.describedBy}
        onChange={(e) => {
          onChange(spec.name, e.target.value);
        }}
      />
      <FieldNotes spec={spec} ids={ids} error={error} />
    </div>
  );
}

function NumberField({ spec, value, error, onChange }: ControlProps) {
  const ids = fieldIds(spec, error);
  const id = ids.input;
  return (
    <div className={`field${error ? ' has-error' : ''}`}>
      <label htmlFor={id}>{spec.label}</label>
      <input
        id={id}
        type="text"
        inputMode={spec.integer ? 'numeric' : 'decimal'}
        placeholder="server default"
        value={value}
        aria-invalid={error ? true : undefined}
        aria-describedby={ids.describedBy}
        onChange={(e) => {
          onChange(spec.name, e.target.value);
        }}
      />
      <FieldNotes spec={spec} ids={ids} error={error} />
    </div>
  );
}

export interface ParameterControlsProps {
  values: ParamValues;
  errors: FieldErrors;
  onChange: (name: ParamName, value: string) => void;
  advancedOpen: boolean;
  onAdvancedToggle: (open: boolean) => void;
  onReset: () => void;
}

export function ParameterControls({
  values,
  errors,
  onChange,
  advancedOpen,
  onAdvancedToggle,
  onReset,
}: ParameterControlsProps) {
  return (
    <fieldset className="params">
      <legend>Parameters</legend>
      <div className="param-grid">
        {MAIN_PARAMS.map((spec) => (
          <Slider
            key={spec.name}
            spec={spec}
            value={values[spec.name]}
            error={errors[spec.name]}
            onChange={onChange}
          />
        ))}
      </div>
      <details
        className="advanced"
        open={advancedOpen}
        onToggle={(e) => {
          onAdvancedToggle(e.currentTarget.open);
        }}
      >
        <summary>Advanced parameters</summary>
        <div className="param-grid">
          {ADVANCED_PARAMS.map((spec) => (
            <NumberField
              key={spec.name}
              spec={spec}
              value={values[spec.name]}
              error={errors[spec.name]}
              onChange={onChange}
            />
          ))}
        </div>
      </details>
      <button type="button" className="button-link" onClick={onReset}>
        Reset to defaults
      </button>
    </fieldset>
  );
}
